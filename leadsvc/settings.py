"""All settings, read once from the environment, typed and validated at start-up.

`Settings.from_env()` is the only place that reads `os.environ`; everything else takes a
`Settings` object. With no environment at all the service runs embedded: a SQLite file and a
generated secret key under `instance/`.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from leadsvc.webhook_targets import parse_networks

#: Where `leadsvc` keeps its SQLite file, secret key, ZIP data cache and mail files by default.
DEFAULT_INSTANCE_PATH = "instance"
#: email-validator's DNS checks must never hold a signup for longer than this.
MAX_DNS_TIMEOUT_SECONDS = 3.0
#: The brand's postal address, printed in every email to a person (CAN-SPAM).
DEFAULT_POSTAL_ADDRESS = "MINI USA, 300 Chestnut Ridge Road, Woodcliff Lake, NJ 07677"
DEFAULT_MAIL_FROM = "MINI USA <stay-in-the-loop@newsletter.example.com>"
DEFAULT_LIST_ID = "stay-in-the-loop.newsletter.example.com"
DEFAULT_UNSUBSCRIBE_MAILTO = "unsubscribe@newsletter.example.com"
#: Seconds between the tries of an outbound job (one more try than intervals).
DEFAULT_RETRY_INTERVALS = (30, 120, 600, 3600)
SMTP_SCHEMES = ("smtp", "smtp+starttls", "smtps")

#: Generous enough for a carrier NAT address shared by many people; tight enough for a flood.
DEFAULT_LIMIT_PER_IP = "30/minute;300/hour"
#: One address signing up again and again (list bombing someone else's inbox).
DEFAULT_LIMIT_PER_EMAIL = "5/hour;10/day"
#: Where Amazon SNS signing certificates and subscription confirmations may be fetched from
#: (`scheme://host` of the URL, matched in full). Never read from the environment.
SNS_TRUSTED_ORIGIN = r"https://sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?"
_TOPIC_ARN = re.compile(r"arn:aws(-cn|-us-gov)?:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]{1,256}")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable and what it expects."""


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, not {raw!r}")


def _number(
    environ: Mapping[str, str], name: str, default: float, low: float, high: float
) -> float:
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number, not {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low:g} and {high:g}, not {raw}")
    return value


def _optional(environ: Mapping[str, str], name: str) -> str | None:
    raw = environ.get(name, "").strip()
    return raw or None


def _intervals(environ: Mapping[str, str], name: str) -> tuple[int, ...]:
    raw = _optional(environ, name)
    if raw is None:
        return DEFAULT_RETRY_INTERVALS
    try:
        values = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise SettingsError(f"{name} must be comma-separated whole seconds, not {raw!r}") from None
    if not 1 <= len(values) <= 20 or not all(0 < value <= 86_400 for value in values):
        raise SettingsError(f"{name} must list 1 to 20 intervals of 1 to 86400 seconds")
    return values


def _limit(environ: Mapping[str, str], name: str, default: str) -> str:
    """A Flask-Limiter limit string such as `30/minute;300/hour`."""
    value = _optional(environ, name) or default
    if not re.fullmatch(
        r"\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day)s?\s*"
        r"(;\s*\d+\s*(/|per)\s*(\d+\s*)?(second|minute|hour|day)s?\s*)*",
        value,
    ):
        raise SettingsError(f"{name} must look like 30/minute;300/hour, not {value!r}")
    return value


def _origins(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = _optional(environ, name)
    if raw is None:
        return ()
    origins = tuple(part.strip().rstrip("/") for part in raw.split(",") if part.strip())
    for origin in origins:
        if not re.fullmatch(r"https?://[A-Za-z0-9.-]+(:\d+)?", origin):
            raise SettingsError(f"{name} must list origins like https://www.example.com")
    return origins


def _networks(environ: Mapping[str, str], name: str) -> tuple:
    """Comma-separated IP networks (`10.0.0.0/8,127.0.0.1/32`); none by default."""
    try:
        return parse_networks(environ.get(name, ""))
    except ValueError as error:
        raise SettingsError(f"{name}: {error}") from None


def _mailbox(environ: Mapping[str, str], name: str, default: str) -> str:
    from email.utils import parseaddr

    value = _optional(environ, name) or default
    address = parseaddr(value)[1]
    if "@" not in address or any(ch in value for ch in "\r\n"):
        raise SettingsError(f"{name} must be an email address (optionally 'Name <address>')")
    return value


def _embedded_secret_key(instance_path: Path) -> str:
    """Read the embedded default's secret key from `instance/`, generating it on first use."""
    key_file = instance_path / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key


def _secret_key(env: Mapping[str, str], instance_path: Path, embedded: bool) -> str:
    """SECRET_KEY: required with DATABASE_URL, generated into `instance/` when embedded."""
    secret_key = _optional(env, "SECRET_KEY")
    if secret_key is None:
        if not embedded:
            raise SettingsError(
                "SECRET_KEY is required when DATABASE_URL is set: generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
            )
        return _embedded_secret_key(instance_path)
    if len(secret_key) < 32:
        raise SettingsError("SECRET_KEY must be at least 32 characters long")
    return secret_key


def _public_base_url(env: Mapping[str, str]) -> str:
    """PUBLIC_BASE_URL without a trailing slash; it must be http(s)."""
    public_base_url = (_optional(env, "PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/")
    if not public_base_url.startswith(("http://", "https://")):
        raise SettingsError("PUBLIC_BASE_URL must start with http:// or https://")
    return public_base_url


def _zip_source(env: Mapping[str, str]) -> str:
    """ZIP_SOURCE in lower case: offline (the default) or geonames."""
    zip_source = (_optional(env, "ZIP_SOURCE") or "offline").lower()
    if zip_source not in {"offline", "geonames"}:
        raise SettingsError("ZIP_SOURCE must be offline or geonames")
    return zip_source


def _log_level(env: Mapping[str, str]) -> str:
    """LOG_LEVEL in upper case: DEBUG, INFO (the default), WARNING or ERROR."""
    log_level = (_optional(env, "LOG_LEVEL") or "INFO").upper()
    if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise SettingsError("LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
    return log_level


def _smtp_url(env: Mapping[str, str]) -> str | None:
    """SMTP_URL, if set, with one of the `SMTP_SCHEMES`."""
    smtp_url = _optional(env, "SMTP_URL")
    if smtp_url is not None and smtp_url.split("://", 1)[0] not in SMTP_SCHEMES:
        raise SettingsError("SMTP_URL must start with smtp://, smtp+starttls:// or smtps://")
    return smtp_url


def _redis_url(env: Mapping[str, str]) -> str | None:
    """REDIS_URL, if set, as a redis://, rediss:// or unix:// URL."""
    redis_url = _optional(env, "REDIS_URL")
    if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise SettingsError("REDIS_URL must start with redis://, rediss:// or unix://")
    return redis_url


def _job_timeouts(env: Mapping[str, str]) -> tuple[int, float, float]:
    """(JOB_TIMEOUT, SMTP_TIMEOUT, WEBHOOK_TIMEOUT); a job outlasts the calls it makes."""
    job_timeout = int(_number(env, "JOB_TIMEOUT", 60, 2, 3600))
    smtp_timeout = _number(env, "SMTP_TIMEOUT", 20, 1, 600)
    webhook_timeout = _number(env, "WEBHOOK_TIMEOUT", 5, 1, 600)
    if max(smtp_timeout, webhook_timeout) >= job_timeout:
        raise SettingsError("JOB_TIMEOUT must be longer than SMTP_TIMEOUT and WEBHOOK_TIMEOUT")
    return job_timeout, smtp_timeout, webhook_timeout


def _list_id(env: Mapping[str, str]) -> str:
    """LIST_ID, the List-Id header's host-name-like label."""
    list_id = _optional(env, "LIST_ID") or DEFAULT_LIST_ID
    if not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", list_id):
        raise SettingsError("LIST_ID must look like a host name (list-label.example.com)")
    return list_id


@dataclass(frozen=True)
class Settings:
    """The service's configuration. Build it with `from_env`, or directly in tests."""

    database_url: str
    secret_key: str
    instance_path: Path
    embedded: bool = False
    redis_url: str | None = None
    smtp_url: str | None = None
    public_base_url: str = "http://127.0.0.1:8000"
    email_check_deliverability: bool = False
    email_dns_timeout: float = MAX_DNS_TIMEOUT_SECONDS
    proxy_count: int = 0
    zip_source: str = "offline"
    log_level: str = "INFO"
    double_opt_in: bool = False
    brand_postal_address: str = DEFAULT_POSTAL_ADDRESS
    mail_from: str = DEFAULT_MAIL_FROM
    list_id: str = DEFAULT_LIST_ID
    unsubscribe_mailto: str = DEFAULT_UNSUBSCRIBE_MAILTO
    job_timeout: int = 60
    job_retry_intervals: tuple[int, ...] = DEFAULT_RETRY_INTERVALS
    smtp_timeout: float = 20.0
    webhook_timeout: float = 5.0
    #: Networks dealer webhooks may reach although they are loopback, private or link-local.
    webhook_allowed_networks: tuple = ()
    confirm_link_days: int = 7
    confirm_emails_per_day: int = 3
    rate_limits_enabled: bool = True
    signup_limit_per_ip: str = DEFAULT_LIMIT_PER_IP
    signup_limit_per_email: str = DEFAULT_LIMIT_PER_EMAIL
    min_fill_seconds: float = 2.0
    site_origins: tuple[str, ...] = ()
    metrics_token: str | None = None
    retention_days: int = 730
    #: Console accounts of admins and compliance must set up a second factor (TOTP) to sign in.
    require_2fa: bool = False
    #: Dealer follow-up: the default response target in (business) hours, whether it counts
    #: business hours only, how far and how often an overdue lead is offered on, and how far
    #: a lead may be routed at all (None: no limit).
    lead_response_hours: float = 24.0
    business_hours: bool = True
    reassign_max_km: float = 80.0
    reassign_max_times: int = 2
    route_max_km: float | None = None
    #: Deliverability: the VERP envelope domain (None: the envelope sender is MAIL_FROM), the
    #: bounce mailbox and suppression rules.
    bounce_domain: str | None = None
    bounce_imap_url: str | None = None
    bounce_poll_seconds: int = 300
    soft_bounce_limit: int = 3
    soft_bounce_days: int = 7
    hard_bounce_days: int = 365
    #: Bounce webhooks (POST /webhooks/bounces/<provider>): the SNS topics whose Amazon SES
    #: notifications are taken, SendGrid's Event Webhook verification key (base64 DER), and
    #: the HTTP basic credentials Postmark's webhook sends. A provider left unset is off.
    ses_topic_arns: tuple[str, ...] = ()
    sendgrid_webhook_public_key: str | None = None
    postmark_webhook_user: str | None = None
    postmark_webhook_password: str | None = None
    #: For tests only, and never read from the environment: the origins SNS certificates and
    #: subscription URLs may come from (production keeps SNS_TRUSTED_ORIGIN).
    sns_trusted_origin: str = SNS_TRUSTED_ORIGIN

    @property
    def zip_data_dir(self) -> Path:
        """pgeocode's cache and the offline GeoNames-format ZIP file live here."""
        return self.instance_path / "pgeocode"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def mail_dir(self) -> Path:
        """Without SMTP_URL, outbound email is written here as .eml files."""
        return self.instance_path / "mail"

    @property
    def max_attempts(self) -> int:
        """Tries of one outbound job: the first and one per retry interval."""
        return len(self.job_retry_intervals) + 1

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raise `SettingsError` with a clear message."""
        env = os.environ if environ is None else environ
        instance_path = _instance_path(env)
        embedded = _optional(env, "DATABASE_URL") is None
        database_url = database_url_from_env(env)
        secret_key = _secret_key(env, instance_path, embedded)
        public_base_url = _public_base_url(env)
        zip_source = _zip_source(env)
        log_level = _log_level(env)
        smtp_url = _smtp_url(env)
        redis_url = _redis_url(env)
        job_timeout, smtp_timeout, webhook_timeout = _job_timeouts(env)
        list_id = _list_id(env)

        return cls(
            database_url=database_url,
            secret_key=secret_key,
            instance_path=instance_path,
            embedded=embedded,
            redis_url=redis_url,
            smtp_url=smtp_url,
            public_base_url=public_base_url,
            email_check_deliverability=_flag(env, "EMAIL_CHECK_DELIVERABILITY", False),
            email_dns_timeout=_number(
                env, "EMAIL_DNS_TIMEOUT", MAX_DNS_TIMEOUT_SECONDS, 0.1, MAX_DNS_TIMEOUT_SECONDS
            ),
            proxy_count=int(_number(env, "PROXY_COUNT", 0, 0, 5)),
            zip_source=zip_source,
            log_level=log_level,
            double_opt_in=_flag(env, "DOUBLE_OPT_IN", False),
            brand_postal_address=_optional(env, "BRAND_POSTAL_ADDRESS") or DEFAULT_POSTAL_ADDRESS,
            mail_from=_mailbox(env, "MAIL_FROM", DEFAULT_MAIL_FROM),
            list_id=list_id,
            unsubscribe_mailto=_mailbox(env, "UNSUBSCRIBE_MAILTO", DEFAULT_UNSUBSCRIBE_MAILTO),
            job_timeout=job_timeout,
            job_retry_intervals=_intervals(env, "JOB_RETRY_INTERVALS"),
            smtp_timeout=smtp_timeout,
            webhook_timeout=webhook_timeout,
            webhook_allowed_networks=_networks(env, "WEBHOOK_ALLOWED_NETWORKS"),
            confirm_link_days=int(_number(env, "CONFIRM_LINK_DAYS", 7, 1, 90)),
            confirm_emails_per_day=int(_number(env, "CONFIRM_EMAILS_PER_DAY", 3, 1, 10)),
            rate_limits_enabled=_flag(env, "RATE_LIMITS_ENABLED", True),
            signup_limit_per_ip=_limit(env, "SIGNUP_LIMIT_PER_IP", DEFAULT_LIMIT_PER_IP),
            signup_limit_per_email=_limit(env, "SIGNUP_LIMIT_PER_EMAIL", DEFAULT_LIMIT_PER_EMAIL),
            min_fill_seconds=_number(env, "MIN_FILL_SECONDS", 2.0, 0, 60),
            site_origins=_origins(env, "SITE_ORIGINS"),
            metrics_token=_optional(env, "METRICS_TOKEN"),
            retention_days=int(_number(env, "RETENTION_DAYS", 730, 1, 36_500)),
            require_2fa=_flag(env, "REQUIRE_2FA", False),
            **_follow_up(env),
            **_deliverability(env),
            **_bounce_webhooks(env),
        )


def _follow_up(env: Mapping[str, str]) -> dict:
    """LEAD_RESPONSE_HOURS, BUSINESS_HOURS, REASSIGN_MAX_KM, REASSIGN_MAX_TIMES, ROUTE_MAX_KM."""
    route_max_km = _optional(env, "ROUTE_MAX_KM")
    return {
        "lead_response_hours": _number(env, "LEAD_RESPONSE_HOURS", 24.0, 0.01, 8760),
        "business_hours": _flag(env, "BUSINESS_HOURS", True),
        "reassign_max_km": _number(env, "REASSIGN_MAX_KM", 80.0, 0, 20_000),
        "reassign_max_times": int(_number(env, "REASSIGN_MAX_TIMES", 2, 0, 20)),
        "route_max_km": (
            None if route_max_km is None else _number(env, "ROUTE_MAX_KM", 0, 1, 20_000)
        ),
    }


def _deliverability(env: Mapping[str, str]) -> dict:
    """BOUNCE_DOMAIN, BOUNCE_IMAP_URL, BOUNCE_POLL_SECONDS, SOFT_BOUNCE_LIMIT, SOFT_BOUNCE_DAYS,
    HARD_BOUNCE_DAYS."""
    domain = _optional(env, "BOUNCE_DOMAIN")
    if domain is not None and not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", domain):
        raise SettingsError("BOUNCE_DOMAIN must be a domain name (bounces.example.com)")
    return {
        "bounce_domain": domain.lower() if domain else None,
        "bounce_imap_url": _optional(env, "BOUNCE_IMAP_URL"),
        "bounce_poll_seconds": int(_number(env, "BOUNCE_POLL_SECONDS", 300, 10, 86_400)),
        "soft_bounce_limit": int(_number(env, "SOFT_BOUNCE_LIMIT", 3, 1, 100)),
        "soft_bounce_days": int(_number(env, "SOFT_BOUNCE_DAYS", 7, 1, 365)),
        "hard_bounce_days": int(_number(env, "HARD_BOUNCE_DAYS", 365, 1, 36_500)),
    }


def _bounce_webhooks(env: Mapping[str, str]) -> dict:
    """SES_TOPIC_ARNS, SENDGRID_WEBHOOK_PUBLIC_KEY, POSTMARK_WEBHOOK_USER/PASSWORD."""
    arns = tuple(a.strip() for a in (_optional(env, "SES_TOPIC_ARNS") or "").split(",") if a)
    if not all(_TOPIC_ARN.fullmatch(arn) for arn in arns):
        raise SettingsError("SES_TOPIC_ARNS must be SNS topic ARNs, separated by commas")
    key = _optional(env, "SENDGRID_WEBHOOK_PUBLIC_KEY")
    if key is not None:
        try:
            base64.b64decode(key, validate=True)
        except binascii.Error:
            raise SettingsError(
                "SENDGRID_WEBHOOK_PUBLIC_KEY must be the base64 verification key SendGrid shows"
            ) from None
    user = _optional(env, "POSTMARK_WEBHOOK_USER")
    password = _optional(env, "POSTMARK_WEBHOOK_PASSWORD")
    if (user is None) != (password is None):
        raise SettingsError(
            "set both POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD, or neither"
        )
    if password is not None and len(password) < 16:
        raise SettingsError("POSTMARK_WEBHOOK_PASSWORD must be at least 16 characters")
    return {
        "ses_topic_arns": arns,
        "sendgrid_webhook_public_key": key,
        "postmark_webhook_user": user,
        "postmark_webhook_password": password,
    }


def _instance_path(env: Mapping[str, str]) -> Path:
    return Path(env.get("INSTANCE_PATH") or DEFAULT_INSTANCE_PATH).resolve()


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str:
    """The database URL alone (Alembic's command line needs it without a secret key)."""
    env = os.environ if environ is None else environ
    url = _optional(env, "DATABASE_URL")
    if url is None:
        return f"sqlite:///{_instance_path(env) / 'leadsvc.db'}"
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if not url.startswith(("sqlite:///", "postgresql+psycopg://")):
        raise SettingsError("DATABASE_URL must be a postgresql+psycopg:// or sqlite:/// URL")
    return url
