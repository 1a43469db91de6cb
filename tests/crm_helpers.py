"""Shared bits of the CRM tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app import gateways
from app.gateways.fakes import FakeCrm


@pytest.fixture(name="crm")
def crm_fixture(app) -> Iterator[FakeCrm]:
    fake = gateways.crm(app)
    assert isinstance(fake, FakeCrm)
    fake.reset()
    yield fake
    fake.reset()
