"""WeChat API clients (access token through stable_token, shared in Redis) against recorded shapes."""

from __future__ import annotations

import json
import threading
import time

import pytest
import responses

from app.wechat import clients
from tests.wechat_helpers import APP_ID

API = "https://api.weixin.qq.com/cgi-bin"


@pytest.fixture(autouse=True)
def real_wechat(app, monkeypatch):
    """These tests drive the real clients against WeChat's recorded shapes (``responses``)."""
    from tests.wechat_helpers import use_real_wechat

    use_real_wechat(app, monkeypatch)
    yield
    clients.forget_clients(app)


def stable_token(http_mock, token="T1"):
    return http_mock.add(responses.POST, f"{API}/stable_token", json={"access_token": token, "expires_in": 7200})


def test_the_access_token_comes_from_stable_token_and_is_shared_through_redis(app, app_ctx, http_mock):
    fetch = stable_token(http_mock)
    http_mock.add(responses.POST, f"{API}/menu/create", json={"errcode": 0, "errmsg": "ok"})
    clients.official_client().menu.create({"button": []})
    assert fetch.call_count == 1
    sent = json.loads(http_mock.calls[0].request.body)
    assert sent == {
        "grant_type": "client_credential",
        "appid": APP_ID,
        "secret": "test-app-secret",
        "force_refresh": False,
    }
    assert http_mock.calls[1].request.url.endswith("access_token=T1")
    clients.forget_clients(app)  # another process: a new client, the same Redis
    clients.official_client().menu.create({"button": []})
    assert fetch.call_count == 1
    ttl = app.extensions["loyalty.redis"].ttl(f"wechat:{APP_ID}_access_token")
    assert 6800 < ttl <= 7200 - clients.TOKEN_SAFETY_SECONDS


def test_an_expired_token_is_refetched_and_the_call_retried(app, app_ctx, http_mock):
    stable_token(http_mock, "T1")
    clients.official_client().access_token  # noqa: B018 - warm the cache with T1
    http_mock.replace(responses.POST, f"{API}/stable_token", json={"access_token": "T2", "expires_in": 7200})
    http_mock.add(responses.POST, f"{API}/menu/create", json={"errcode": 42001, "errmsg": "access_token expired"})
    http_mock.add(responses.POST, f"{API}/menu/create", json={"errcode": 0, "errmsg": "ok"})
    assert clients.official_client().menu.create({"button": []})["errcode"] == 0
    assert http_mock.calls[-1].request.url.endswith("access_token=T2")
    refetch = [json.loads(c.request.body) for c in http_mock.calls if c.request.url.endswith("/stable_token")][-1]
    assert refetch["force_refresh"] is True  # WeChat refused the current token: only then is it forced


def test_routine_renewals_never_force_so_processes_do_not_invalidate_each_other(app, app_ctx, http_mock, time_machine):
    stable_token(http_mock, "T1")
    http_mock.add(responses.POST, f"{API}/menu/create", json={"errcode": 0, "errmsg": "ok"})
    first = clients.official_client()
    first.menu.create({"button": []})
    time_machine.move_to(time.time() + 7200 - clients.TOKEN_SAFETY_SECONDS - 30)  # its last minute here
    first.menu.create({"button": []})  # Redis still holds it: used as is, not force-renewed
    clients.forget_clients(app)
    second = clients.official_client()  # another process adopts T1 from Redis
    second.menu.create({"button": []})
    app.extensions["loyalty.redis"].delete(f"wechat:{APP_ID}_access_token")  # its TTL ran out
    second.menu.create({"button": []})
    first.menu.create({"button": []})
    fetches = [json.loads(c.request.body) for c in http_mock.calls if c.request.url.endswith("/stable_token")]
    assert [f["force_refresh"] for f in fetches] == [False, False]


def test_only_one_process_refreshes_at_a_time(app, http_mock):
    calls = []
    gate = threading.Event()

    def slow_token(request):
        calls.append(request)
        gate.wait(1)
        return 200, {}, json.dumps({"access_token": "T-shared", "expires_in": 7200})

    http_mock.add_callback(responses.POST, f"{API}/stable_token", callback=slow_token)
    tokens = []

    def one_process():
        with app.app_context():
            client = clients.StableTokenClient(
                APP_ID,
                "test-app-secret",
                redis_client=app.extensions["loyalty.redis"],
                api_base="https://api.weixin.qq.com",
                timeout=5,
            )
            tokens.append(client.access_token)

    threads = [threading.Thread(target=one_process) for _ in range(8)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(10)
    assert tokens == ["T-shared"] * 8
    assert len(calls) == 1
