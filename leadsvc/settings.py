"""All settings, read once from the environment, typed and validated at start-up.

`Settings.from_env()` is the only place that reads `os.environ`; everything else takes a
`Settings` object. With no environment at all the service runs embedded: a SQLite file and a
generated secret key under `instance/`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: Where `leadsvc` keeps its SQLite file, secret key, ZIP data cache and mail files by default.
DEFAULT_INSTANCE_PATH = "instance"
#: email-validator's DNS checks must never hold a signup for longer than this.
MAX_DNS_TIMEOUT_SECONDS = 3.0


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


def _number(environ: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
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

    @property
    def zip_data_dir(self) -> Path:
        """pgeocode's cache and the offline GeoNames-format ZIP file live here."""
        return self.instance_path / "pgeocode"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate every setting; raise `SettingsError` with a clear message."""
        env = os.environ if environ is None else environ
        instance_path = _instance_path(env)
        embedded = _optional(env, "DATABASE_URL") is None
        database_url = database_url_from_env(env)

        secret_key = _optional(env, "SECRET_KEY")
        if secret_key is None:
            if not embedded:
                raise SettingsError(
                    "SECRET_KEY is required when DATABASE_URL is set: "
                    "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
                )
            secret_key = _embedded_secret_key(instance_path)
        elif len(secret_key) < 32:
            raise SettingsError("SECRET_KEY must be at least 32 characters long")

        public_base_url = (_optional(env, "PUBLIC_BASE_URL") or "http://127.0.0.1:8000").rstrip("/")
        if not public_base_url.startswith(("http://", "https://")):
            raise SettingsError("PUBLIC_BASE_URL must start with http:// or https://")

        zip_source = (_optional(env, "ZIP_SOURCE") or "offline").lower()
        if zip_source not in {"offline", "geonames"}:
            raise SettingsError("ZIP_SOURCE must be offline or geonames")

        log_level = (_optional(env, "LOG_LEVEL") or "INFO").upper()
        if log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError("LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")

        return cls(
            database_url=database_url,
            secret_key=secret_key,
            instance_path=instance_path,
            embedded=embedded,
            redis_url=_optional(env, "REDIS_URL"),
            smtp_url=_optional(env, "SMTP_URL"),
            public_base_url=public_base_url,
            email_check_deliverability=_flag(env, "EMAIL_CHECK_DELIVERABILITY", False),
            email_dns_timeout=_number(
                env, "EMAIL_DNS_TIMEOUT", MAX_DNS_TIMEOUT_SECONDS, 0.1, MAX_DNS_TIMEOUT_SECONDS
            ),
            proxy_count=int(_number(env, "PROXY_COUNT", 0, 0, 5)),
            zip_source=zip_source,
            log_level=log_level,
        )


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
