"""Invoices contract: what a contact owes now, from open invoices less their payments, never negative."""

from __future__ import annotations

from domain.values import ContactId, Money, OrgId
from tests.support.backends import Backend, InvoiceFixture
from tests.support.builders import contact, org

ORG, C1 = OrgId("org-1"), ContactId("c-1")


def usd(minor: int) -> Money:
    return Money(minor, "USD")


async def _contact(backend: Backend) -> None:
    await backend.seed.org(org("org-1"))
    await backend.seed.contact(contact("c-1"))
    await backend.seed.contact(contact("c-2"))


async def test_nothing_owed_is_zero_in_the_asked_currency(backend: Backend) -> None:
    """A contact without invoices owes zero."""
    await _contact(backend)
    assert await backend.invoices.outstanding_balance(ORG, C1, "USD") == usd(0)


async def test_open_invoices_less_their_payments(backend: Backend) -> None:
    """Two open invoices, one partly paid: the sum of what remains on each."""
    await _contact(backend)
    await backend.seed.invoice(InvoiceFixture("i-1", ORG, C1, usd(12_550), payments=(usd(2_550),)))
    await backend.seed.invoice(InvoiceFixture("i-2", ORG, C1, usd(999)))
    assert await backend.invoices.outstanding_balance(ORG, C1, "USD") == usd(10_999)


async def test_paid_void_and_written_off_invoices_are_not_owed(backend: Backend) -> None:
    """Only open invoices count."""
    await _contact(backend)
    await backend.seed.invoice(InvoiceFixture("i-paid", ORG, C1, usd(500), "paid", (usd(500),)))
    await backend.seed.invoice(InvoiceFixture("i-void", ORG, C1, usd(700), "void"))
    await backend.seed.invoice(InvoiceFixture("i-off", ORG, C1, usd(900), "written_off"))
    await backend.seed.invoice(InvoiceFixture("i-open", ORG, C1, usd(100)))
    assert await backend.invoices.outstanding_balance(ORG, C1, "USD") == usd(100)


async def test_an_overpaid_invoice_owes_zero_not_a_credit(backend: Backend) -> None:
    """Payments above an invoice's amount never make the balance negative."""
    await _contact(backend)
    await backend.seed.invoice(InvoiceFixture("i-1", ORG, C1, usd(1_000), payments=(usd(600), usd(600))))
    assert await backend.invoices.outstanding_balance(ORG, C1, "USD") == usd(0)


async def test_other_contacts_invoices_do_not_count(backend: Backend) -> None:
    """The balance is the contact's own."""
    await _contact(backend)
    await backend.seed.invoice(InvoiceFixture("i-1", ORG, ContactId("c-2"), usd(1_000)))
    assert await backend.invoices.outstanding_balance(ORG, C1, "USD") == usd(0)
