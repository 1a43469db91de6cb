"""The mini-app's WeChat (registered codes on the in-process fake) and a signed-in client."""

from __future__ import annotations

from typing import Any

from app.gateways import MiniAppSignIn


class FakeMiniappWeChat:
    """The mini-app's WeChat (the in-process fake): only the codes a test registers work."""

    def __init__(self, mini_app: Any) -> None:
        self.fake = mini_app
        mini_app.accept_any_code = False

    def code(self, code: str, openid: str, unionid: str | None = None) -> str:
        self.fake.sessions[code] = MiniAppSignIn(openid, f"sk-{openid}", unionid)
        return code

    def phone_code(self, code: str, phone: str) -> str:
        self.fake.phones[code] = phone
        return code

    @property
    def phone_calls(self) -> int:
        return len([call for call in self.fake.calls if call["api"] == "getuserphonenumber"])


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
