"""Settings come only from LOYALTY_* variables; production refuses to start without secrets."""

import pytest

from app.config import REQUIRED_SECRETS, ConfigError, describe_defaults, load_settings

ALL_PRODUCTION = {
    **{f"LOYALTY_{name}": f"production-value-of-{name}-0123456789abcdef" for name in REQUIRED_SECRETS},
    "LOYALTY_WECHAT_TOKEN": "T" * 32,  # WeChat allows 3..32 characters: production takes 32
    "LOYALTY_DATA_KEY": "Q1vDZ8jOTtYbsv0J6OzqzTjN2M8r7EUwI3UwBzS2rRs=",
    "LOYALTY_ENV": "production",
    "LOYALTY_DATABASE_URL": "postgresql+psycopg://db/loyalty",
    "LOYALTY_REDIS_URL": "redis://cache:6379/0",
    "LOYALTY_CRM_URL": "https://crm.example.com",
    "LOYALTY_WECHAT_PAY_NOTIFY_URL": "https://loyalty.example.com/api/v1/wechat-pay/notifications",
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
    assert settings.DMS_SECRET == "production-value-of-DMS_SECRET-0123456789abcdef"
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


def test_production_refuses_weak_or_development_values_and_lists_every_problem():
    from app.config import _dev_defaults

    dev = _dev_defaults()
    environ = {
        **ALL_PRODUCTION,
        "LOYALTY_DMS_SECRET": "s3cr3t-dms",  # < 32 bytes
        "LOYALTY_SECRET_KEY": dev["SECRET_KEY"],  # the development default
        "LOYALTY_DATA_KEY": dev["DATA_KEY"],
        "LOYALTY_REDIS_URL": "memory://",
        "LOYALTY_DATABASE_URL": "sqlite:////tmp/loyalty.db",
        "LOYALTY_WECHAT_API_BASE": "sandbox",
        "LOYALTY_WECHAT_PAY_API_BASE": "sandbox",
        "LOYALTY_WECHAT_SAFE_MODE_ONLY": "1",
        "LOYALTY_WECHAT_AES_KEY": "",
    }
    del environ["LOYALTY_CRM_SECRET"]
    with pytest.raises(ConfigError) as excinfo:
        load_settings(environ)
    message = str(excinfo.value)
    for expected in (
        "LOYALTY_CRM_SECRET",
        "LOYALTY_DMS_SECRET",
        "LOYALTY_SECRET_KEY",
        "LOYALTY_DATA_KEY",
        "LOYALTY_REDIS_URL",
        "LOYALTY_DATABASE_URL",
        "LOYALTY_WECHAT_API_BASE",
        "LOYALTY_WECHAT_PAY_API_BASE",
        "LOYALTY_WECHAT_AES_KEY",
    ):
        assert expected in message, expected
    assert "s3cr3t-dms" not in message and dev["SECRET_KEY"] not in message  # never echo a secret


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOYALTY_WECHAT_TOKEN", "sandboxtoken"),
        ("LOYALTY_WECHAT_APP_SECRET", "x" * 31),
        ("LOYALTY_WECHAT_APP_ID", "wx0000000000sandbox"),
        ("LOYALTY_CRM_URL", "sandbox"),
    ],
)
def test_production_refuses_each_weak_value(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({**ALL_PRODUCTION, name: value})


def test_safe_mode_only_needs_the_aes_key_in_every_environment():
    with pytest.raises(ConfigError, match="LOYALTY_WECHAT_AES_KEY"):
        load_settings({"LOYALTY_WECHAT_SAFE_MODE_ONLY": "1"})
    settings = load_settings({"LOYALTY_WECHAT_SAFE_MODE_ONLY": "true", "LOYALTY_WECHAT_AES_KEY": "k" * 43})
    assert settings.WECHAT_SAFE_MODE_ONLY is True
    assert load_settings({}).WECHAT_SAFE_MODE_ONLY is False


def test_api_docs_are_on_in_development_and_off_in_production_unless_enabled():
    assert load_settings({}).API_DOCS is True
    assert load_settings(ALL_PRODUCTION).API_DOCS is False
    assert load_settings({**ALL_PRODUCTION, "LOYALTY_API_DOCS": "1"}).API_DOCS is True


def test_the_pooler_is_pgbouncer_or_nothing():
    assert load_settings({}).DB_POOLER == ""
    assert load_settings({"LOYALTY_DB_POOLER": "pgbouncer"}).DB_POOLER == "pgbouncer"
    with pytest.raises(ConfigError, match="LOYALTY_DB_POOLER"):
        load_settings({"LOYALTY_DB_POOLER": "pgpool"})
