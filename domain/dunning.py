"""Dunning: remind a contact of an overdue payment, escalating by how long it has been overdue.

Rules, in the order they apply:
- The payload is checked first, in full, before any look-up, so an invalid job fails whatever the database holds.
  ``daysOverdue`` below 1 contradicts the job itself (nothing is overdue yet): an invalid job, like an ``amount``
  that is not > 0, finite and with at most 3 decimals (the most any currency has), or a ``paymentLink`` that is
  not an https URL with a host (no credentials, no whitespace or control characters). Only the currency's own
  minor unit needs the org: an amount not in whole cents of the org's currency fails once the org is read. Error
  messages name the field, never its value.
- The org's escalation policy picks the stage: the one with the highest ``min_days_overdue`` not above
  ``daysOverdue``. A valid job before the org's first stage is Skipped("before_first_stage").
- At send time the balance is re-read: nothing owed any more (paid, voided, written off) -> Skipped("nothing_owed").
  The message states the job's amount (what the CRM asked to chase), or the balance when that is lower (paid in
  part since); never more than what was asked.
- Transactional send window of the org, in the contact's zone (else the org's): closed -> Deferred to its opening.
- The stage's channels are tried in a fixed order (email, then SMS); a channel without an address or consent is
  left out; none left -> Undeliverable("no_reachable_channel"). Each channel is sent at most once per contact and
  stage (ledger key ``dunning:<orgId>:<contactId>:<stage min days>:<channel>``). The outcome: Deferred when any
  channel was deferred (the channels already sent will not be sent again), else Sent with the channels that went
  out (now or in an earlier run), else the first channel's non-sent outcome.
- Templates ``dunning_<tone>`` of the org per channel, else the built-in ones below. Their variables:
  ``first_name``, ``org_name``, ``amount`` (``125.50 USD``), ``days_overdue``, ``payment_link``.

Known limitation: the payload carries no invoice or cycle id, so the ledger key cannot tell a new debt months
later from the old one: a stage reached in an earlier cycle is not sent again (the dispatcher reports it as
delivered earlier). A cycle id from the CRM (an extra payload key) would lift this.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import urlsplit

import attrs

from domain.compose import reachable_address, render_email, render_sms
from domain.delivery import Delivered, DeliveryResult, Dispatcher, Suppressed
from domain.errors import InvalidJob, InvalidValue
from domain.jobs import DunningJob
from domain.messages import EmailMessage, SendClaim, SmsMessage
from domain.models import Contact, DunningStage, DunningTone, Organization, Template
from domain.outcomes import Deferred, Outcome, Sent, Skipped, Undeliverable
from domain.ports import Clock, Contacts, Invoices, Organizations, TemplateRenderer, Templates
from domain.send_windows import is_open, next_open
from domain.values import Channel, ContactId, MessagePurpose, Money, OrgId, PhoneNumber

CHANNEL_ORDER = (Channel.EMAIL, Channel.SMS)
MOST_DECIMALS_CURRENCY = "KWD"  # 3 decimal places, the most of any ISO 4217 currency

_DEFAULT_SMS = {
    DunningTone.FRIENDLY: "Hi {{ first_name }}, a friendly reminder from {{ org_name }}: {{ amount }} is "
    "{{ days_overdue }} days overdue. Pay here: {{ payment_link }}",
    DunningTone.FIRM: "{{ org_name }}: {{ amount }} is {{ days_overdue }} days overdue. Please pay now: "
    "{{ payment_link }}",
    DunningTone.URGENT: "URGENT from {{ org_name }}: {{ amount }} is {{ days_overdue }} days overdue. Pay today: "
    "{{ payment_link }}",
    DunningTone.FINAL: "FINAL NOTICE from {{ org_name }}: {{ amount }} is {{ days_overdue }} days overdue. Pay "
    "now to avoid further action: {{ payment_link }}",
}
_DEFAULT_SUBJECT = {
    DunningTone.FRIENDLY: "A friendly payment reminder from {{ org_name }}",
    DunningTone.FIRM: "Payment overdue: {{ amount }}",
    DunningTone.URGENT: "Urgent: {{ amount }} is {{ days_overdue }} days overdue",
    DunningTone.FINAL: "Final notice: {{ amount }} overdue",
}
_EMAIL_BODY = (
    "Hi {{ first_name }},\n\n{{ amount }} owed to {{ org_name }} is {{ days_overdue }} days overdue.\n"
    "You can pay it here: {{ payment_link }}\n"
)


def template_name(tone: DunningTone) -> str:
    return f"dunning_{tone}"


def default_template(org_id: OrgId, tone: DunningTone, channel: Channel) -> Template:
    """The built-in template of a tone, for orgs that have none of their own."""
    if channel is Channel.SMS:
        return Template(org_id, template_name(tone), channel, _DEFAULT_SMS[tone])
    return Template(org_id, template_name(tone), channel, _EMAIL_BODY, subject=_DEFAULT_SUBJECT[tone])


def stage_for(policy: tuple[DunningStage, ...], days_overdue: int) -> DunningStage | None:
    """The stage with the highest ``min_days_overdue`` not above ``days_overdue``; None before the first."""
    reached = [s for s in policy if s.min_days_overdue <= days_overdue]
    return max(reached, key=lambda s: s.min_days_overdue) if reached else None


def dunning_ledger_key(org_id: OrgId, contact_id: ContactId, stage: DunningStage, channel: Channel) -> str:
    return f"dunning:{org_id}:{contact_id}:{stage.min_days_overdue}:{channel}"


def _has_unsafe_char(text: str) -> bool:
    return any(c.isspace() or unicodedata.category(c).startswith("C") for c in text)


def _is_https_url(link: str) -> bool:
    try:
        parts = urlsplit(link)
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:  # also bad brackets in the host
        return False
    return parts.scheme == "https" and bool(parts.hostname) and "@" not in parts.netloc


def check_payment_link(link: str) -> str:
    """The link when it is an https URL with a host, no credentials and no whitespace or control characters."""
    if _has_unsafe_char(link) or not _is_https_url(link):
        raise InvalidJob("paymentLink", "is not an https URL")
    return link


def check_amount_form(amount: Decimal) -> None:
    """What any currency requires of an amount, checked before the org (and its currency) is read: finite, > 0, at
    most 3 decimal places (ISO 4217's largest minor unit)."""
    check_amount(amount, MOST_DECIMALS_CURRENCY)


def check_amount(amount: Decimal, currency: str) -> Money:
    """The amount as Money of the org's currency: > 0, finite, with no more decimals than the currency has."""
    try:
        money = Money.from_major(amount, currency)
    except InvalidValue as invalid:
        raise InvalidJob("amount", invalid.problem) from None
    if not money.is_positive:
        raise InvalidJob("amount", "must be greater than 0")
    return money


def _channel_of(message: SmsMessage | EmailMessage) -> Channel:
    return Channel.SMS if isinstance(message, SmsMessage) else Channel.EMAIL


@attrs.define
class DunningService:
    contacts: Contacts
    organizations: Organizations
    invoices: Invoices
    templates: Templates
    renderer: TemplateRenderer
    dispatcher: Dispatcher
    clock: Clock

    async def process(self, job: DunningJob) -> Outcome:
        """Send the invoice's dunning notice for the stage of ``job.days_overdue`` once per channel, within the
        org's transactional send window (this module's docstring).

        Returns ``Sent`` (the channels that went out), ``Skipped`` (org or contact gone, before the first stage,
        nothing owed, unconfirmed), ``Deferred`` (the window is closed, or a channel was deferred) or
        ``Undeliverable``.
        Raises InvalidJob naming the field of a malformed payload (before any look-up), TransientError when a store
        or provider is unreachable (the job's backoff applies), DeliveryOutcomeUnknown when a provider's answer was
        ambiguous (the send ledger keeps it from going out twice).
        """
        if job.days_overdue < 1:
            raise InvalidJob("daysOverdue", "must be at least 1")
        payment_link = check_payment_link(job.payment_link)
        check_amount_form(job.amount)
        org = await self.organizations.get(job.org_id)
        if org is None:
            return Skipped("org_not_found")
        if not org.active:
            return Skipped("org_inactive")
        asked = check_amount(job.amount, org.currency)
        stage = stage_for(org.dunning_policy, job.days_overdue)
        if stage is None:
            return Skipped("before_first_stage")
        contact = await self.contacts.get(job.org_id, job.contact_id)
        if contact is None:
            return Skipped("contact_not_found")
        balance = await self.invoices.outstanding_balance(job.org_id, job.contact_id, org.currency)
        if not balance.is_positive:
            return Skipped("nothing_owed")
        now = self.clock.now()
        zone = contact.zone or org.zone
        if not is_open(org.transactional_window, now, zone):
            return Deferred(next_open(org.transactional_window, now, zone), "outside_send_window")
        variables = {
            "first_name": contact.first_name,
            "org_name": org.name,
            "amount": min(asked, balance).format(),
            "days_overdue": job.days_overdue,
            "payment_link": payment_link,
        }
        messages = [
            await self._message(org, contact, stage, c, variables) for c in CHANNEL_ORDER if c in stage.channels
        ]
        reachable = [m for m in messages if m is not None]
        if not reachable:
            return Undeliverable("no_reachable_channel")
        results = [(m, await self.dispatcher.deliver(self._claim(job, m), m)) for m in reachable]
        return _outcome(results)

    async def _message(
        self,
        org: Organization,
        contact: Contact,
        stage: DunningStage,
        channel: Channel,
        variables: Mapping[str, object],
    ) -> SmsMessage | EmailMessage | None:
        address = reachable_address(contact, channel)
        if address is None:
            return None
        template = await self.templates.get(org.id, template_name(stage.tone), channel)
        template = template or default_template(org.id, stage.tone, channel)
        key = dunning_ledger_key(org.id, contact.id, stage, channel)
        if isinstance(address, PhoneNumber):
            return SmsMessage(key, address, render_sms(self.renderer, template, variables))
        email = render_email(self.renderer, template, variables)
        return EmailMessage(key, address, email.subject, email.text, email.html)

    def _claim(self, job: DunningJob, message: SmsMessage | EmailMessage) -> SendClaim:
        purpose = MessagePurpose.TRANSACTIONAL
        return SendClaim(message.ledger_key, job.org_id, job.contact_id, _channel_of(message), purpose, message.to)


def _outcome(results: list[tuple[SmsMessage | EmailMessage, DeliveryResult]]) -> Outcome:
    deferred = [r for _, r in results if isinstance(r, Deferred)]
    if deferred:
        return max(deferred, key=lambda r: r.until)
    sent = tuple(_channel_of(m) for m, r in results if isinstance(r, Delivered))
    if sent:
        return Sent(sent)
    first = results[0][1]
    if isinstance(first, Suppressed):
        return Undeliverable(f"suppressed_{first.reason}")
    if isinstance(first, Undeliverable):
        return Undeliverable(first.reason, first.code)
    return Skipped("delivery_unconfirmed")
