"""The OpenAPI document is the contract: schemathesis generates requests for every operation in
it and checks that no answer is a 5xx and every answer matches its documented status codes,
content types and schemas.

The document is the committed ``docs/openapi.json`` (what the mini-app team builds against;
``make openapi`` rewrites it); the first test proves it is exactly what ``/api/openapi.json``
serves, so the contract run below covers the live API.

Each call carries a real credential for the operation: a registered member's mini-app token, a
bound advisor's token for staff mode, or a back-office token whose role the endpoint accepts (read
from ``require_operator``). Examples are bounded so the run stays at a few minutes.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.core.db import db
from app.members import registration, sessions, staff_mode
from app.points import ledger
from tests import factories
from tests.miniapp_helpers import FakeMiniappWeChat

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = int(os.environ.get("LOYALTY_CONTRACT_EXAMPLES", "12"))  # more for a deeper hunt
_openids = itertools.count(1)


DOCUMENT = Path(__file__).resolve().parents[1] / "docs" / "openapi.json"
schema = schemathesis.openapi.from_path(DOCUMENT)


class Credentials:
    """Mints a fresh credential per call, so an operation that signs out cannot starve the next example."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        dealer = factories.dealer()
        self.advisor = factories.staff(dealer)
        self.member = factories.member(status="active", enrolling_dealer_id=dealer.id)
        ledger.earn(
            ledger.Earning(
                member_id=self.member.id, currency="reward", points=800, idempotency_key="contract", source_type="test"
            )
        )
        self.member_openid = self._registered_openid()
        self.staff_openid = f"o-contract-staff-{next(_openids)}"
        code, _ = staff_mode.issue_invite(self.advisor, actor="contract-test")
        staff_mode.bind(sessions.sign_in(self.staff_openid, "sk", None).identity, code)
        self.operators = {
            role: factories.operator(role, dealer_id=dealer.id if role == "dealer_manager" else None)
            for role in ("agent", "supervisor", "dealer_manager", "operator")
        }
        db.session.flush()

    @staticmethod
    def _registered_openid() -> str:
        openid = f"o-contract-member-{next(_openids)}"
        identity = sessions.sign_in(openid, "sk", None).identity
        registration.register(
            identity,
            policy_version=registration.POLICY_VERSION.value(),
            purposes=["service_notifications"],
            phone=factories.phone(),
        )
        return openid

    def headers_for(self, method: str, path: str) -> dict[str, str]:
        if path.startswith("/api/v1/staff/") and path != "/api/v1/staff/binding":
            return self._bearer(sessions.sign_in(self.staff_openid, "sk", None).token)
        member_paths = ("/api/v1/me", "/api/v1/sessions/", "/api/v1/staff/binding", "/api/v1/benefits", "/api/v1/mall/")
        if path.startswith(member_paths) or (path.startswith("/api/v1/dealers/") and path.endswith("/slots")):
            return self._bearer(sessions.sign_in(self.member_openid, "sk", None).token)
        roles = self._roles(method, path)
        if roles is not None:
            return self._bearer(self.operators[roles[0] if roles else "operator"][1])
        return {}

    def _roles(self, method: str, path: str) -> tuple[str, ...] | None:
        adapter = self.app.url_map.bind("localhost")
        endpoint, _ = adapter.match(path, method=method.upper())
        return getattr(self.app.view_functions[endpoint], "operator_roles", None)

    @staticmethod
    def _bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def credentials(fakes, app: Flask, app_ctx: None) -> Credentials:
    FakeMiniappWeChat(fakes.mini_app)  # WeChat answers "invalid code" to generated login codes
    return Credentials(app)


def test_the_committed_document_is_what_the_api_serves(client: Any) -> None:
    served = client.get("/api/openapi.json").json
    assert served == json.loads(DOCUMENT.read_text()), "docs/openapi.json is stale: run `make openapi`"


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_within_its_documented_contract(
    case: Any, app: Flask, credentials: Credentials
) -> None:
    # The route is looked up from the documented operation, whatever the generated values are.
    headers = credentials.headers_for(case.operation.method, re.sub(r"{\w+}", "1", case.operation.path))
    case.call_and_validate(app=app, headers=headers, checks=CHECKS)
