"""Choose the words of one send: the model's personalized copy when the template opts in and the answer passes
the guard rails, else the plain template; store the choice under the send's ledger key before anything is sent.

Called after the send window, cap, consent and ledger rules have let the message go. Every failure (budget,
timeout, refusal, a broken rule) sends the plain template and is counted with its reason; nothing here fails the
job. A copy stored earlier for the ledger key is reused as it is: a retry, a crash or a replay sends the same words
and never asks the model again.
"""

from __future__ import annotations

import html as html_lib
import re
from collections.abc import Mapping
from typing import Any

import attrs

from domain.copy_guard import check_answer, placeholders, values_for_model
from domain.messages import EmailMessage, SmsMessage
from domain.models import Organization, Template
from domain.personalization import (
    CopyPersonalizer,
    CopySource,
    DailyBudget,
    FallbackReason,
    PersonalizationBudgets,
    PersonalizationFailed,
    PersonalizationOutcome,
    PersonalizationRecorder,
    PersonalizationRequest,
    PersonalizedCopies,
    PersonalizedCopy,
    StoredCopy,
)
from domain.ports import Clock
from domain.sms import SMS_MAX_CHARS
from domain.values import Channel

Message = SmsMessage | EmailMessage

EMAIL_MAX_BODY_CHARS = 20_000  # a nurture email is a few paragraphs; a longer answer is a runaway

_ANCHOR = re.compile(r"""(?is)<a\s[^>]*?href\s*=\s*["']([^"']+)["'][^>]*>(.*?)</a\s*>""")
_BLOCK_END = re.compile(r"(?i)<br\s*/?>|</p\s*>|</div\s*>|</li\s*>|</h[1-6]\s*>")
_TAG = re.compile(r"<[^>]*>")
_URL = re.compile(r"(?i)\bhttps?://[^\s<>\"']+")


def plain_text(rendered: str) -> str:
    """An email body's text for the model: links written out as ``label (url)``, line breaks kept, other markup
    dropped, entities decoded."""
    text = _ANCHOR.sub(lambda m: f"{m.group(2)} ({m.group(1)})", rendered)
    text = _TAG.sub("", _BLOCK_END.sub("\n", text))
    return "\n".join(line.strip() for line in html_lib.unescape(text).splitlines()).strip()


def html_from_text(text: str) -> str:
    """The HTML part of a personalized email: the text escaped, one ``<p>`` per paragraph, links made clickable
    (every link was in the template: the guard rails refuse new ones)."""

    def paragraph(block: str) -> str:
        escaped = html_lib.escape(block.strip()).replace("\n", "<br>")
        return "<p>" + _URL.sub(lambda m: f'<a href="{m.group(0)}">{m.group(0)}</a>', escaped) + "</p>"

    return "\n".join(paragraph(block) for block in re.split(r"\n\s*\n", text) if block.strip())


def _stored(message: Message, source: CopySource, fallback: FallbackReason | None) -> StoredCopy:
    """The message's own words as a stored copy."""
    if isinstance(message, SmsMessage):
        return StoredCopy(message.ledger_key, source, message.body, None, None, fallback)
    return StoredCopy(message.ledger_key, source, message.text, message.subject, message.html, fallback)


def _apply(message: Message, copy: StoredCopy) -> Message:
    if isinstance(message, SmsMessage):
        return attrs.evolve(message, body=copy.body)
    return attrs.evolve(message, subject=copy.subject or message.subject, text=copy.body, html=copy.html)


@attrs.define
class CopyPersonalization:
    """``budget`` is every org's daily allowance (requests and tokens), counted per org and local day.
    ``personalizer`` None: personalization is off (no OPENAI_API_KEY), but words stored for a send while it was on
    are still the words of that send's retries."""

    personalizer: CopyPersonalizer | None
    copies: PersonalizedCopies
    budgets: PersonalizationBudgets
    recorder: PersonalizationRecorder
    clock: Clock
    budget: DailyBudget

    async def copy_for(
        self,
        org: Organization,
        template: Template,
        message: Message,
        personalization: Mapping[str, Any],
        *,
        claimed_before: bool,
    ) -> Message:
        """The message to hand to the dispatcher: ``message`` itself when ``template`` does not opt in; else the
        copy stored for its ledger key, chosen and stored now when there is none. ``claimed_before``: the ledger
        already holds this send (claimed before any copy was stored), so its words stay the template's."""
        if template.ai_instruction is None:
            return message
        stored = await self.copies.get(message.ledger_key)
        if stored is None:
            if self.personalizer is None:  # off: the template as written, nothing stored
                return message
            chosen = await self._choose(self.personalizer, org, template, message, personalization, claimed_before)
            stored = await self.copies.keep(chosen, self.clock.now())
        return _apply(message, stored)

    async def _choose(
        self,
        personalizer: CopyPersonalizer,
        org: Organization,
        template: Template,
        message: Message,
        personalization: Mapping[str, Any],
        claimed_before: bool,
    ) -> StoredCopy:
        if claimed_before:
            return self._fallback(org, message, FallbackReason.CLAIMED_BEFORE)
        day = self.clock.now().astimezone(org.zone).date()
        if not await self.budgets.take(org.id, day, self.budget):
            return self._fallback(org, message, FallbackReason.BUDGET_EXHAUSTED)
        request = _request(template, message, personalization)
        try:
            answer = await personalizer.personalize(request)
        except PersonalizationFailed as failed:
            return self._fallback(org, message, failed.reason)
        await self.budgets.spend(org.id, day, answer.input_tokens + answer.output_tokens)
        broken = check_answer(request, answer, template.ai_required_literals)
        self.recorder.record(
            PersonalizationOutcome(
                org.id, template.channel, broken, answer.model, answer.input_tokens, answer.output_tokens
            )
        )
        if broken is not None:
            return _stored(message, CopySource.TEMPLATE, broken)
        return _from_answer(message, answer)

    def _fallback(self, org: Organization, message: Message, reason: FallbackReason) -> StoredCopy:
        channel = Channel.SMS if isinstance(message, SmsMessage) else Channel.EMAIL
        self.recorder.record(PersonalizationOutcome(org.id, channel, reason))
        return _stored(message, CopySource.TEMPLATE, reason)


def _request(template: Template, message: Message, personalization: Mapping[str, Any]) -> PersonalizationRequest:
    assert template.ai_instruction is not None
    values = values_for_model(placeholders(template.body, template.subject), personalization)
    if isinstance(message, SmsMessage):
        return PersonalizationRequest(Channel.SMS, template.ai_instruction, message.body, None, values, SMS_MAX_CHARS)
    return PersonalizationRequest(
        Channel.EMAIL,
        template.ai_instruction,
        plain_text(message.text),
        message.subject,
        values,
        EMAIL_MAX_BODY_CHARS,
    )


def _from_answer(message: Message, answer: PersonalizedCopy) -> StoredCopy:
    if isinstance(message, SmsMessage):
        return StoredCopy(message.ledger_key, CopySource.MODEL, answer.body, None, None)
    return StoredCopy(message.ledger_key, CopySource.MODEL, answer.body, answer.subject, html_from_text(answer.body))
