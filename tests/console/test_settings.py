"""Settings from the environment: typed helpers that refuse bad values naming the variable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from console import env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("off", False),
                                            ("", False)])
def test_env_bool(monkeypatch, value, expected):
    monkeypatch.setenv("X_FLAG", value)
    assert env.env_bool("X_FLAG") is expected


def test_bad_values_name_the_variable(monkeypatch):
    monkeypatch.setenv("DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DEBUG='maybe' is not a boolean"):
        env.env_bool("DEBUG")
    monkeypatch.setenv("PORTS", "80,http")
    with pytest.raises(ImproperlyConfigured, match="PORTS has 'http'"):
        env.env_ports("PORTS", [])
    monkeypatch.setenv("N", "0")
    with pytest.raises(ImproperlyConfigured, match=r"N=0 is outside 1\.\.None"):
        env.env_int("N", 5, minimum=1)


def test_file_variants(monkeypatch, tmp_path):
    secret = tmp_path / "s"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("TANGLAW_SECRET_KEY_FILE", str(secret))
    assert env.env_str("TANGLAW_SECRET_KEY") == "from-a-file"
    monkeypatch.setenv("TANGLAW_SECRET_KEY", "both")
    with pytest.raises(ImproperlyConfigured, match="both set"):
        env.env_str("TANGLAW_SECRET_KEY")
    monkeypatch.delenv("TANGLAW_SECRET_KEY")
    monkeypatch.setenv("TANGLAW_SECRET_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="cannot be read"):
        env.env_str("TANGLAW_SECRET_KEY")


def manage(*args, extra_env=None, data_dir):
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("TANGLAW_", "DJANGO_", "DATABASE_", "REDIS_"))}
    environment.update({"TANGLAW_DATA_DIR": str(data_dir),
                        "DJANGO_SETTINGS_MODULE": "console.settings", **(extra_env or {})})
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120)


def test_fresh_data_dir_gets_private_generated_secrets(tmp_path):
    result = manage("check", data_dir=tmp_path / "data")
    assert result.returncode == 0, result.stderr
    for name in ("secret_key", "encryption.keys"):
        path = tmp_path / "data" / name
        assert path.stat().st_mode & 0o777 == 0o600
        assert len(path.read_text().strip()) >= 44
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700


def test_bad_database_url_is_refused_loudly(tmp_path):
    result = manage("check", extra_env={"DATABASE_URL": "mysql://x@y/z"}, data_dir=tmp_path)
    assert result.returncode != 0 and "DATABASE_URL must be postgres://" in result.stderr


def test_check_deploy_is_clean_behind_tls(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "WARNING",
                    extra_env={"TANGLAW_SECURE": "1", "ALLOWED_HOSTS": "console.example.org"},
                    data_dir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_sqlite_runs_in_wal_with_immediate_transactions(db):
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        mode = cursor.fetchone()[0]
    # the test database is in memory (journal "memory"); a file database uses WAL
    assert mode in ("wal", "memory")
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_redis_url_without_the_driver_says_what_to_install(monkeypatch):
    """The check settings run when REDIS_URL is set (the driver is installed here, so its
    absence is simulated)."""
    import importlib.util

    from django.core.exceptions import ImproperlyConfigured

    from console import settings as tanglaw_settings

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "channels_redis" else real(name, *a))
    with pytest.raises(ImproperlyConfigured,
                       match="REDIS_URL is set but channels_redis is not installed"):
        tanglaw_settings._require("channels_redis", "redis", "REDIS_URL")
    tanglaw_settings._require("json", "redis", "REDIS_URL")  # present: no error
