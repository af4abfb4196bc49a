"""KpiFactsSource contract shared by the fake and Postgres: a day without activity is all zeros.

The fake returns preset facts (the unit tests set them), so the arithmetic itself is checked against Postgres
only, in tests/integration/postgres/test_kpi_facts.py.
"""

from __future__ import annotations

from datetime import timedelta

from domain.models import KpiFacts
from domain.values import Money
from tests.support.backends import Backend
from tests.support.builders import T0, org


async def test_a_quiet_day_is_all_zeros_in_the_org_currency(backend: Backend) -> None:
    """No appointments, payments, messages or enrollments: zero counts, zero money in the org's currency."""
    clinic = await backend.seed.org(org("org-1"))
    facts = await backend.kpi.facts(clinic, T0, T0 + timedelta(days=1))
    zero = Money.zero("USD")
    assert facts == KpiFacts(0, 0, 0, 0, 0, zero, zero, {}, 0, 0, zero)
