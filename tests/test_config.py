"""Settings come only from LOYALTY_* variables; production refuses to start without secrets."""

import pytest

from app.config import REQUIRED_SECRETS, ConfigError, describe_defaults, load_settings

ALL_PRODUCTION = {
    **{f"LOYALTY_{name}": f"value-{name}" for name in REQUIRED_SECRETS},
    "LOYALTY_ENV": "production",
    "LOYALTY_DATABASE_URL": "postgresql+psycopg://db/loyalty",
    "LOYALTY_REDIS_URL": "redis://cache:6379/0",
    "LOYALTY_CRM_URL": "https://crm.example.com",
}


def test_production_refuses_to_start_and_names_every_missing_secret():
    environ = dict(ALL_PRODUCTION)
    del environ["LOYALTY_DMS_SECRET"]
    del environ["LOYALTY_DATA_KEY"]
    with pytest.raises(ConfigError) as excinfo:
        load_settings(environ)
    assert "LOYALTY_DMS_SECRET" in str(excinfo.value)
    assert "LOYALTY_DATA_KEY" in str(excinfo.value)


def test_production_starts_with_everything_set_and_uses_the_real_wechat_api():
    settings = load_settings(ALL_PRODUCTION)
    assert settings.is_production
    assert settings.DMS_SECRET == "value-DMS_SECRET"
    assert settings.WECHAT_API_BASE == "https://api.weixin.qq.com"
    assert settings.JOBS_MODE == "rq"
    assert settings.defaulted == ()


def test_development_fills_and_reports_defaults_but_keeps_what_is_set():
    settings = load_settings({"LOYALTY_DMS_SECRET": "mine", "LOYALTY_WECHAT_AES_KEY": ""})
    assert settings.DMS_SECRET == "mine"
    assert settings.WECHAT_AES_KEY == ""  # explicitly empty stays empty
    assert settings.DATABASE_URL.startswith("sqlite:///")
    assert settings.wechat_sandbox
    assert settings.JOBS_MODE == "eager"
    text = describe_defaults(settings)
    assert "LOYALTY_DATABASE_URL=sqlite" in text
    assert "LOYALTY_DMS_SECRET" not in text


def test_unknown_environment_name_is_refused():
    with pytest.raises(ConfigError):
        load_settings({"LOYALTY_ENV": "staging-ish"})


def test_integer_settings_are_parsed():
    settings = load_settings({"LOYALTY_SIGNATURE_WINDOW_SECONDS": "120"})
    assert settings.SIGNATURE_WINDOW_SECONDS == 120


def test_behind_proxies_the_client_address_comes_from_x_forwarded_for():
    from flask import Flask

    from app.core.http import trust_proxies
    from app.core.ratelimit import client_ip

    def app_seeing_ips(hops: int) -> Flask:
        app = Flask(__name__)
        app.add_url_rule("/ip", "ip", client_ip)
        trust_proxies(app, hops)
        return app

    forwarded = {"X-Forwarded-For": "203.0.113.7, 10.0.0.2"}  # the client, then the load balancer
    assert app_seeing_ips(0).test_client().get("/ip", headers=forwarded).text == "127.0.0.1"
    assert app_seeing_ips(1).test_client().get("/ip", headers=forwarded).text == "10.0.0.2"
    assert app_seeing_ips(2).test_client().get("/ip", headers=forwarded).text == "203.0.113.7"
    assert load_settings({"LOYALTY_PROXY_HOPS": "2"}).PROXY_HOPS == 2
