"""A fake of WeChat's mini-app endpoints (via ``responses``) and a signed-in client."""

from __future__ import annotations

import json
import re
from typing import Any

import responses

API = "https://api.weixin.qq.com"


class FakeMiniappWeChat:
    """``jscode2session`` and ``getuserphonenumber`` as WeChat answers them."""

    def __init__(self, mock: responses.RequestsMock) -> None:
        self.codes: dict[str, dict[str, Any]] = {}
        self.phones: dict[str, str] = {}
        self.phone_calls = 0
        mock.add(responses.POST, f"{API}/cgi-bin/stable_token", json={"access_token": "MINI", "expires_in": 7200})
        mock.add_callback(responses.GET, re.compile(rf"{API}/sns/jscode2session.*"), callback=self._session)
        mock.add_callback(responses.POST, re.compile(rf"{API}/wxa/business/getuserphonenumber.*"), callback=self._phone)

    def code(self, code: str, openid: str, unionid: str | None = None) -> str:
        self.codes[code] = {
            "openid": openid,
            "session_key": f"sk-{openid}",
            **({"unionid": unionid} if unionid else {}),
        }
        return code

    def phone_code(self, code: str, phone: str) -> str:
        self.phones[code] = phone
        return code

    def _session(self, request: Any) -> tuple[int, dict, str]:
        code = request.params.get("js_code", "")
        if code not in self.codes:
            return 200, {}, json.dumps({"errcode": 40029, "errmsg": "invalid code"})
        return 200, {}, json.dumps(self.codes[code])

    def _phone(self, request: Any) -> tuple[int, dict, str]:
        self.phone_calls += 1
        code = json.loads(request.body)["code"]
        if code not in self.phones:
            return 200, {}, json.dumps({"errcode": 40029, "errmsg": "invalid code"})
        phone = self.phones[code]
        return (
            200,
            {},
            json.dumps(
                {
                    "errcode": 0,
                    "errmsg": "ok",
                    "phone_info": {"phoneNumber": phone, "purePhoneNumber": phone, "countryCode": "86"},
                }
            ),
        )


class MiniClient:
    """The mini-app: signs in, then calls the API with its bearer token."""

    def __init__(self, client: Any, fake: FakeMiniappWeChat) -> None:
        self.client, self.fake, self.token = client, fake, None

    def sign_in(self, openid: str, unionid: str | None = None) -> Any:
        response = self.client.post(
            "/api/v1/sessions", json={"code": self.fake.code(f"code-{openid}", openid, unionid)}
        )
        assert response.status_code == 201, response.json
        self.token = response.json["token"]
        return response

    def register(self, phone: str, *, purposes: list[str] | None = None, policy: str = "2026.1") -> Any:
        code = self.fake.phone_code(f"phone-{phone}", phone)
        return self.post(
            "/api/v1/me/registration",
            json={"policy_version": policy, "phone_code": code, "purposes": purposes or ["service_notifications"]},
        )

    def headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.client.get(url, headers=self.headers(kwargs.pop("headers", None)), **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.client.post(url, headers=self.headers(kwargs.pop("headers", None)), **kwargs)

    def put(self, url: str, **kwargs: Any) -> Any:
        return self.client.put(url, headers=self.headers(kwargs.pop("headers", None)), **kwargs)

    def patch(self, url: str, **kwargs: Any) -> Any:
        return self.client.patch(url, headers=self.headers(kwargs.pop("headers", None)), **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self.client.delete(url, headers=self.headers(kwargs.pop("headers", None)), **kwargs)
