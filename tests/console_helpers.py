"""Driving the console with Flask's test client: sign in, fetch the CSRF token, post forms."""

from __future__ import annotations

import re
from typing import Any

from flask.testing import FlaskClient

PASSWORD = "correct horse"  # tests.factories.operator's password
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/console/sign-in") -> str:
    page = client.get(path)
    found = _CSRF.search(page.get_data(as_text=True))
    assert found, f"no CSRF token on {path} ({page.status_code})"
    return found.group(1)


def sign_in(client: FlaskClient, username: str, password: str = PASSWORD) -> Any:
    token = csrf_token(client)
    response = client.post("/console/sign-in", data={"username": username, "password": password, "csrf_token": token})
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def post_form(client: FlaskClient, path: str, data: dict[str, Any], *, from_page: str = "/console/") -> Any:
    """POST a console form the way the browser does: with the session's CSRF token."""
    return client.post(path, data={**data, "csrf_token": csrf_token(client, from_page)})
