"""Settings come from the environment, validated once; production secrets have no default."""

import stat

import pytest

from leadsvc.settings import Settings, SettingsError


def test_no_environment_is_the_embedded_default(tmp_path):
    settings = Settings.from_env({"INSTANCE_PATH": str(tmp_path)})
    assert settings.embedded
    assert settings.database_url == f"sqlite:///{tmp_path / 'leadsvc.db'}"
    assert settings.redis_url is None and settings.smtp_url is None
    assert settings.email_check_deliverability is False
    assert settings.email_dns_timeout == 3.0


def test_embedded_secret_key_is_generated_once_and_private(tmp_path):
    first = Settings.from_env({"INSTANCE_PATH": str(tmp_path)}).secret_key
    second = Settings.from_env({"INSTANCE_PATH": str(tmp_path)}).secret_key
    assert first == second and len(first) >= 32
    assert stat.S_IMODE((tmp_path / "secret_key").stat().st_mode) == 0o600


def test_production_database_requires_a_secret_key(tmp_path):
    with pytest.raises(SettingsError, match="SECRET_KEY is required"):
        Settings.from_env(
            {"INSTANCE_PATH": str(tmp_path), "DATABASE_URL": "postgresql://db.internal/leads"}
        )
    assert not (tmp_path / "secret_key").exists()


def test_postgresql_url_uses_psycopg_3(tmp_path):
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql://u@h/db",
            "SECRET_KEY": "k" * 40,
            "INSTANCE_PATH": str(tmp_path),
        }
    )
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert not settings.embedded


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("DATABASE_URL", "mysql://x/y", "DATABASE_URL"),
        ("SECRET_KEY", "short", "at least 32"),
        ("EMAIL_CHECK_DELIVERABILITY", "maybe", "true or false"),
        ("EMAIL_DNS_TIMEOUT", "10", "between 0.1 and 3"),
        ("EMAIL_DNS_TIMEOUT", "soon", "must be a number"),
        ("PUBLIC_BASE_URL", "example.com", "http"),
        ("ZIP_SOURCE", "usps", "offline or geonames"),
        ("LOG_LEVEL", "LOUD", "LOG_LEVEL"),
        ("PROXY_COUNT", "9", "PROXY_COUNT"),
    ],
)
def test_bad_values_stop_the_start_with_a_clear_message(tmp_path, name, value, complaint):
    with pytest.raises(SettingsError, match=complaint):
        Settings.from_env({"INSTANCE_PATH": str(tmp_path), name: value})


def test_deliverability_checks_are_a_setting(tmp_path):
    settings = Settings.from_env(
        {
            "INSTANCE_PATH": str(tmp_path),
            "EMAIL_CHECK_DELIVERABILITY": "true",
            "EMAIL_DNS_TIMEOUT": "1.5",
        }
    )
    assert settings.email_check_deliverability is True
    assert settings.email_dns_timeout == 1.5


def test_env_example_lists_every_setting_the_code_reads():
    import re
    from pathlib import Path

    root = Path(__file__).parent.parent
    example = (root / "config" / ".env.example").read_text()
    listed = {line.split("=")[0] for line in example.splitlines() if line and line[0] != "#"}
    source = (root / "leadsvc" / "settings.py").read_text()
    read = set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', source))
    assert read >= {"DATABASE_URL", "SECRET_KEY", "INSTANCE_PATH", "REDIS_URL"}
    assert listed == read
