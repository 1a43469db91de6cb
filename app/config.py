"""Settings, read from ``LOYALTY_*`` environment variables and nowhere else.

Three environments:

* ``development`` (the default, what ``make run`` uses): any unset value gets a development
  default (embedded SQLite, in-process Redis, WeChat sandbox) and the defaults are printed once.
* ``test``: like development, but the test harness injects its own URLs.
* ``production``: refuses to start while a secret is missing, short (< 32 bytes) or a development
  default, while Redis is ``memory://``, the database SQLite, a partner API the sandbox, or safe
  mode is required without an AES key; one error lists every problem (``production_problems``).

Business numbers that operators tune (tier thresholds, earn rates, protection periods) are not
here: they are program settings in the database (``app.core.tunables``), changed without a deploy.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from flask import Flask, current_app

ENV_PREFIX = "LOYALTY_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"

REAL_WECHAT_API_BASE = "https://api.weixin.qq.com"
REAL_WECHAT_PAY_API_BASE = "https://api.mch.weixin.qq.com"

#: Secrets a production start cannot do without (SPEC §14).
REQUIRED_SECRETS = (
    "SECRET_KEY",
    "DATA_KEY",
    "WECHAT_APP_ID",
    "WECHAT_APP_SECRET",
    "WECHAT_TOKEN",
    "MINIAPP_APP_ID",
    "MINIAPP_APP_SECRET",
    "WECHAT_PAY_MCH_ID",
    "WECHAT_PAY_API_KEY",
    "DMS_SECRET",
    "CRM_SECRET",
)


#: Secrets we or a partner choose freely: production wants at least 32 bytes of each. (WeChat's
#: AppSecrets and Pay API key are 32 characters; its Token allows 3..32: take the 32.)
STRONG_SECRETS = (
    "SECRET_KEY",
    "WECHAT_APP_SECRET",
    "WECHAT_TOKEN",
    "MINIAPP_APP_SECRET",
    "WECHAT_PAY_API_KEY",
    "DMS_SECRET",
    "CRM_SECRET",
    "METRICS_TOKEN",
    "SMS_REPORT_SECRET",
)
MIN_SECRET_BYTES = 32


class ConfigError(RuntimeError):
    """The environment does not describe a startable service."""


def _dev_secret(name: str) -> str:
    """A stable, obviously-not-production value, so dev restarts keep decrypting their data."""
    return "dev-" + hashlib.sha256(f"loyalty-dev:{name}".encode()).hexdigest()[:32]


def _dev_fernet_key() -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(b"loyalty-dev:data-key").digest()).decode()


def _dev_defaults() -> dict[str, str]:
    return {
        "DATABASE_URL": f"sqlite:///{INSTANCE_DIR / 'loyalty.db'}",
        "REDIS_URL": "memory://",
        "SECRET_KEY": _dev_secret("secret-key"),
        "DATA_KEY": _dev_fernet_key(),
        "WECHAT_APP_ID": "wx0000000000sandbox",
        "WECHAT_APP_SECRET": _dev_secret("wechat-app-secret"),
        "WECHAT_TOKEN": "sandboxtoken",
        "WECHAT_AES_KEY": "",
        "WECHAT_API_BASE": "sandbox",
        "MINIAPP_APP_ID": "wx0000000000miniapp",
        "MINIAPP_APP_SECRET": _dev_secret("miniapp-app-secret"),
        "WECHAT_PAY_MCH_ID": "1900000109",
        "WECHAT_PAY_API_KEY": _dev_secret("wechat-pay-api-key"),
        "WECHAT_PAY_API_BASE": "sandbox",
        "WECHAT_PAY_NOTIFY_URL": "http://127.0.0.1:5000/api/v1/wechat-pay/notifications",
        "DMS_SECRET": "dev-dms-secret",
        "CRM_URL": "sandbox",
        "CRM_SECRET": _dev_secret("crm-secret"),
        "BENEFIT_PARTNER_APP_ID": "loyalty-dev",
        "BENEFIT_PARTNER_SECRET": _dev_secret("benefit-partner-secret"),
        "SMS_API_BASE": "sandbox",
        "SMS_REPORT_SECRET": _dev_secret("sms-report-secret"),
    }


@dataclass(frozen=True)
class Settings:
    """Every setting the process reads. Field names are the env names without the prefix."""

    ENV: str = "development"
    DATABASE_URL: str = ""
    REDIS_URL: str = ""
    SECRET_KEY: str = ""
    DATA_KEY: str = ""  # one Fernet key, or several comma-separated (newest first) while rotating
    #: Key of the blind indexes (phone, VIN, plate lookups), 32 bytes url-safe base64. Unset: derived
    #: from the last DATA_KEY. Pin it (``flask pii index-key``) before removing that key (SECURITY.md).
    BLIND_INDEX_KEY: str = ""
    WECHAT_APP_ID: str = ""
    WECHAT_APP_SECRET: str = ""
    WECHAT_TOKEN: str = ""
    WECHAT_AES_KEY: str = ""
    WECHAT_API_BASE: str = REAL_WECHAT_API_BASE
    MINIAPP_APP_ID: str = ""
    MINIAPP_APP_SECRET: str = ""
    WECHAT_PAY_MCH_ID: str = ""
    WECHAT_PAY_API_KEY: str = ""
    #: WeChat Pay API base; "sandbox" uses the local fake. Red packets need the merchant's client
    #: certificate and key (files) and the server's public IP in each request.
    WECHAT_PAY_API_BASE: str = REAL_WECHAT_PAY_API_BASE
    WECHAT_PAY_CERT_PATH: str = ""
    WECHAT_PAY_KEY_PATH: str = ""
    #: Where WeChat Pay posts payment notifications (mall points + cash orders): this service's
    #: public ``…/api/v1/wechat-pay/notifications`` URL (https in production).
    WECHAT_PAY_NOTIFY_URL: str = ""
    PUBLIC_IP: str = "127.0.0.1"
    #: Seconds the service waits for WeChat's HTTP APIs.
    WECHAT_HTTP_TIMEOUT: float = 5.0
    DMS_SECRET: str = ""
    CRM_URL: str = ""
    CRM_SECRET: str = ""
    #: SMS provider (Aliyun dysmsapi): its API base, "sandbox" for the logging gateway (refused in
    #: production), or empty to switch the SMS channel off. A real base needs the key pair and the
    #: approved signature name (签名).
    SMS_API_BASE: str = ""
    SMS_ACCESS_KEY_ID: str = ""
    SMS_ACCESS_KEY_SECRET: str = ""
    SMS_SIGN_NAME: str = ""
    #: The secret path segment of the SMS status-report address given to Aliyun
    #: (``/api/v1/sms/reports/<secret>``): its HTTP push carries no signature. At least 32 bytes,
    #: URL-safe. While the address changes, two comma-separated (the new one first): both are taken
    #: (docs/operations.md, "Rotate keys and secrets").
    SMS_REPORT_SECRET: str = ""
    #: Seconds the outbox worker waits for the CRM's HTTP API ("sandbox" or empty CRM_URL: the fake).
    CRM_HTTP_TIMEOUT: float = 5.0
    #: The partner that delivers roadside assistance and lounge visits: its API base ("sandbox" or
    #: empty: the in-process fake), our app id there, and the shared secret that signs our calls
    #: and its usage callbacks.
    BENEFIT_PARTNER_URL: str = ""
    BENEFIT_PARTNER_APP_ID: str = ""
    BENEFIT_PARTNER_SECRET: str = ""
    #: "rq" queues jobs in Redis for workers; "eager" runs them in-process right after the commit.
    JOBS_MODE: str = "rq"
    #: Seconds a signed inbound request (DMS, WeChat) may be old or early.
    SIGNATURE_WINDOW_SECONDS: int = 300
    #: Largest inbound request body we read, in bytes.
    MAX_BODY_BYTES: int = 256 * 1024
    #: Reverse proxies in front of the app (nginx, a load balancer) whose X-Forwarded-For and
    #: X-Forwarded-Proto are trusted; per-IP rate limits need the real client address.
    PROXY_HOPS: int = 0
    #: Seconds to wait for a PostgreSQL connection (libpq ``connect_timeout``, whole seconds, ≥ 2).
    #: An unreachable database is then a 503 within that time instead of a hung worker.
    DB_CONNECT_TIMEOUT: int = 5
    #: Milliseconds a single SQL statement may run (PostgreSQL ``statement_timeout``, set on every
    #: connection of the process; 0 = no limit). 30 s suits web processes. Worker and cron processes
    #: run batch jobs (expiry chunks, settlement, tier review) and are deployed with a longer value,
    #: e.g. ``LOYALTY_DB_STATEMENT_TIMEOUT_MS=600000`` in their environment (README, "Deploying").
    DB_STATEMENT_TIMEOUT_MS: int = 30_000
    #: What ``DATABASE_URL`` points at: "" for PostgreSQL itself, "pgbouncer" for PgBouncer in
    #: transaction pooling. Then no server-side prepared statements are made (a pooled server
    #: connection changes hands between transactions) and no startup ``options`` are sent (PgBouncer
    #: refuses them): ``statement_timeout`` is set on the database role instead (docs/scaling.md).
    DB_POOLER: str = ""
    LOG_LEVEL: str = "INFO"
    #: ``json`` (one JSON object per line, the production default) or ``text`` (readable, the
    #: default elsewhere); every line carries the request id and the RQ job id (``core/logs.py``).
    LOG_FORMAT: str = ""
    #: Bearer token ``GET /metrics`` wants (at least 32 bytes in production). Unset: /metrics
    #: answers loopback clients only (a Prometheus agent on the same host).
    METRICS_TOKEN: str = ""
    #: prometheus-client's multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``, not LOYALTY_):
    #: set for gunicorn with several workers so /metrics adds up every worker (gunicorn.conf.py).
    METRICS_MULTIPROC_DIR: str = ""
    #: Refuse plaintext WeChat callbacks: only safe-mode (AES, ``encrypt_type=aes``) messages are
    #: accepted. Needs ``WECHAT_AES_KEY``. Set it once the account is switched to safe mode only.
    WECHAT_SAFE_MODE_ONLY: bool = False
    #: New service-account messages per WeChat user that are processed (flask-limiter notation);
    #: beyond it they are stored unanswered. Retries of stored messages are always answered.
    WECHAT_CALLBACK_RATE_LIMIT: str = "30/minute"
    #: Serve Swagger UI at /api/docs (from vendored static files). Default: on, except in production.
    API_DOCS: bool = True
    #: Which settings came from development defaults rather than the environment.
    defaulted: tuple[str, ...] = field(default=())

    @property
    def is_production(self) -> bool:
        return self.ENV == "production"

    @property
    def json_logs(self) -> bool:
        return self.LOG_FORMAT == "json" or (not self.LOG_FORMAT and self.is_production)

    @property
    def wechat_sandbox(self) -> bool:
        return self.WECHAT_API_BASE == "sandbox"

    @property
    def sms_sandbox(self) -> bool:
        return self.SMS_API_BASE == "sandbox"

    @property
    def pay_sandbox(self) -> bool:
        return self.WECHAT_PAY_API_BASE == "sandbox"

    @property
    def crm_sandbox(self) -> bool:
        return self.CRM_URL in ("", "sandbox")

    @property
    def benefit_partner_sandbox(self) -> bool:
        return self.BENEFIT_PARTNER_URL in ("", "sandbox")

    @property
    def data_keys(self) -> list[str]:
        return _listed(self.DATA_KEY)

    @property
    def sms_report_secrets(self) -> list[str]:
        return _listed(self.SMS_REPORT_SECRET)


#: Settings that hold one value, or several comma-separated (newest first) while rotating.
LISTED = ("DATA_KEY", "SMS_REPORT_SECRET")


def _listed(value: object) -> list[str]:
    return [part.strip() for part in str(value or "").split(",") if part.strip()]


_INT_FIELDS = {
    "SIGNATURE_WINDOW_SECONDS",
    "MAX_BODY_BYTES",
    "PROXY_HOPS",
    "DB_CONNECT_TIMEOUT",
    "DB_STATEMENT_TIMEOUT_MS",
}
#: What may stand between us and PostgreSQL (``DB_POOLER``).
DB_POOLERS = ("", "pgbouncer")
_FLOAT_FIELDS = {"WECHAT_HTTP_TIMEOUT", "CRM_HTTP_TIMEOUT"}
_BOOL_FIELDS = {"WECHAT_SAFE_MODE_ONLY", "API_DOCS"}
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def _as_bool(name: str, value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in _TRUE | _FALSE:
        raise ConfigError(f"{ENV_PREFIX}{name} must be 1 or 0 (true/false), not {value!r}")
    return text in _TRUE


def production_problems(values: dict[str, object]) -> list[str]:
    """Everything that makes ``values`` unfit for production, one line per variable (values of
    secrets are never repeated)."""
    dev = _dev_defaults()
    problems = [
        f"{ENV_PREFIX}{name} is missing"
        for name in (*REQUIRED_SECRETS, "DATABASE_URL", "REDIS_URL", "CRM_URL")
        if not values.get(name)
    ]
    for name, default in dev.items():
        value = values.get(name)
        if name in {"WECHAT_AES_KEY", "WECHAT_API_BASE", "WECHAT_PAY_API_BASE", "CRM_URL", "SMS_API_BASE"} or not value:
            continue  # bases have their own line below
        if value == default or (name in LISTED and default in _listed(value)):
            problems.append(f"{ENV_PREFIX}{name} is the development default")
    for name in STRONG_SECRETS:
        value = str(values.get(name) or "")
        parts = _listed(value) if name in LISTED else [value]
        if value and value != dev.get(name) and any(len(part.encode()) < MIN_SECRET_BYTES for part in parts):
            problems.append(f"{ENV_PREFIX}{name} is shorter than {MIN_SECRET_BYTES} bytes")
    if str(values.get("REDIS_URL") or "").startswith("memory://"):
        problems.append(f"{ENV_PREFIX}REDIS_URL is the in-process memory:// Redis")
    if str(values.get("DATABASE_URL") or "").startswith("sqlite"):
        problems.append(f"{ENV_PREFIX}DATABASE_URL is SQLite")
    for name in ("WECHAT_API_BASE", "WECHAT_PAY_API_BASE", "CRM_URL", "SMS_API_BASE"):
        if values.get(name) == "sandbox":
            problems.append(f"{ENV_PREFIX}{name} is the sandbox")
    if values.get("SMS_API_BASE") and values.get("SMS_API_BASE") != "sandbox":
        problems += [
            f"{ENV_PREFIX}{name} is missing while {ENV_PREFIX}SMS_API_BASE is set"
            for name in ("SMS_ACCESS_KEY_ID", "SMS_ACCESS_KEY_SECRET", "SMS_SIGN_NAME", "SMS_REPORT_SECRET")
            if not values.get(name)
        ]
    if values.get("WECHAT_PAY_API_BASE") != "sandbox" and not str(values.get("WECHAT_PAY_NOTIFY_URL") or "").startswith(
        "https://"
    ):
        problems.append(f"{ENV_PREFIX}WECHAT_PAY_NOTIFY_URL must be this service's public https:// notification URL")
    aes_key = str(values.get("WECHAT_AES_KEY") or "")
    if aes_key and len(aes_key) != 43:
        problems.append(f"{ENV_PREFIX}WECHAT_AES_KEY must be WeChat's 43-character EncodingAESKey")
    return problems + _safe_mode_problems(values)


def _safe_mode_problems(values: dict[str, object]) -> list[str]:
    if values.get("WECHAT_SAFE_MODE_ONLY") and not values.get("WECHAT_AES_KEY"):
        return [f"{ENV_PREFIX}WECHAT_AES_KEY is missing while {ENV_PREFIX}WECHAT_SAFE_MODE_ONLY is set"]
    return []


def _parse_types(values: dict[str, object]) -> None:
    for name in _INT_FIELDS & values.keys():
        values[name] = int(values[name])  # type: ignore[call-overload]
    for name in _FLOAT_FIELDS & values.keys():
        values[name] = float(values[name])  # type: ignore[arg-type]
    for name in _BOOL_FIELDS & values.keys():
        values[name] = _as_bool(name, values[name])


def load_settings(environ: dict[str, str] | None = None, overrides: dict | None = None) -> Settings:
    """Build settings from the environment (plus explicit overrides from tests)."""
    environ = dict(os.environ if environ is None else environ)
    overrides = overrides or {}
    env_name = overrides.get("ENV") or environ.get(ENV_PREFIX + "ENV", "development")
    if env_name not in {"development", "test", "production"}:
        raise ConfigError(f"{ENV_PREFIX}ENV must be development, test or production, not {env_name!r}")

    values: dict[str, object] = {"ENV": env_name}
    names = [f.name for f in fields(Settings) if f.name not in {"ENV", "defaulted"}]
    for name in names:
        if name in overrides:
            values[name] = overrides[name]
        elif ENV_PREFIX + name in environ:
            values[name] = environ[ENV_PREFIX + name]
    _parse_types(values)
    values.setdefault("API_DOCS", env_name != "production")
    if values.get("LOG_FORMAT") not in (None, "", "json", "text"):
        raise ConfigError(f"{ENV_PREFIX}LOG_FORMAT must be json or text, not {values['LOG_FORMAT']!r}")
    values.setdefault("METRICS_MULTIPROC_DIR", environ.get("PROMETHEUS_MULTIPROC_DIR", ""))
    if values.get("DB_POOLER", "") not in DB_POOLERS:
        raise ConfigError(f"{ENV_PREFIX}DB_POOLER must be empty or pgbouncer, not {values['DB_POOLER']!r}")

    defaulted: list[str] = []
    if env_name == "production":
        problems = production_problems(values)
        if problems:
            raise ConfigError("refusing to start in production:\n  " + "\n  ".join(problems))
    else:
        for name, value in _dev_defaults().items():
            if name not in values:
                values[name] = value
                defaulted.append(name)
        values.setdefault("JOBS_MODE", "eager")
        if problems := _safe_mode_problems(values):
            raise ConfigError(problems[0])
    return Settings(**values, defaulted=tuple(defaulted))  # type: ignore[arg-type]


_EXTENSION_KEY = "loyalty.settings"


def install(app: Flask, loaded: Settings) -> None:
    """Attach the settings to ``app`` (the factory does this first; nothing changes them later)."""
    app.extensions[_EXTENSION_KEY] = loaded


def current_settings() -> Settings:
    """The running app's settings: the one typed way to read configuration."""
    return current_app.extensions[_EXTENSION_KEY]


def settings_of(app: Flask) -> Settings:
    """The settings of ``app`` outside its context (factory, CLI bootstrap, tests)."""
    return app.extensions[_EXTENSION_KEY]


def describe_defaults(settings: Settings) -> str:
    """Human-readable list of the development defaults in use (printed by ``make run``)."""
    lines = [f"  {ENV_PREFIX}{name}={getattr(settings, name)}" for name in settings.defaulted]
    return "Development defaults in use (set the variables to override):\n" + "\n".join(lines)
