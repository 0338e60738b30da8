"""API keys are encrypted at rest; rotation keeps old secrets readable."""

import pytest
from django.core.management import call_command
from django.db import connection

from console import crypto
from console.models import Backend

pytestmark = pytest.mark.django_db
KEY = "sk-live-0123456789abcdef"


def stored_column(pk):
    with connection.cursor() as cursor:
        cursor.execute("SELECT api_key FROM console_backend WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_column_never_holds_the_key_in_clear():
    backend = Backend.objects.create(name="b", kind="vllm", base_url="http://127.0.0.1:8000",
                                     api_key=KEY, api_key_last4=KEY[-4:])
    raw = stored_column(backend.pk)
    assert KEY not in raw and raw.startswith("gAAAA")
    assert Backend.objects.get(pk=backend.pk).api_key == KEY


def test_rotation_re_encrypts_and_old_tokens_still_decrypt(tmp_path, settings):
    # pytest-django's settings fixture (every test already overrides settings through it:
    # tests/conftest.py), so the undo order is its own
    key_file = tmp_path / "encryption.keys"
    key_file.write_text("\n".join(settings.TANGLAW_ENCRYPTION_KEYS) + "\n")
    settings.TANGLAW_ENCRYPTION_KEY_FILE = key_file
    settings.TANGLAW_ENCRYPTION_KEYS = list(settings.TANGLAW_ENCRYPTION_KEYS)
    backend = Backend.objects.create(name="b", kind="vllm", base_url="http://127.0.0.1:8000",
                                     api_key=KEY, api_key_last4=KEY[-4:])
    before = stored_column(backend.pk)
    old_token_elsewhere = crypto.encrypt("kept-in-a-backup")
    call_command("rotate_keys")
    keys = key_file.read_text().split()
    assert len(keys) == 2 and keys[1] == settings.TANGLAW_ENCRYPTION_KEYS[1]
    after = stored_column(backend.pk)
    assert after != before and KEY not in after
    assert Backend.objects.get(pk=backend.pk).api_key == KEY
    assert crypto.decrypt(old_token_elsewhere) == "kept-in-a-backup"
    # the new primary key alone reads the re-encrypted column
    from cryptography.fernet import Fernet

    assert Fernet(keys[0].encode()).decrypt(after.encode()).decode() == KEY


def test_unknown_key_gives_a_clear_error():
    from cryptography.fernet import Fernet

    foreign = Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    with pytest.raises(crypto.SecretUnreadable, match="cannot be decrypted"):
        crypto.decrypt(foreign)


def test_rotation_covers_every_encrypted_column(tmp_path, settings):
    from cryptography.fernet import Fernet
    from django.db import connection

    from agents.models import McpServer, Tool

    key_file = tmp_path / "encryption.keys"
    key_file.write_text("\n".join(settings.TANGLAW_ENCRYPTION_KEYS) + "\n")
    settings.TANGLAW_ENCRYPTION_KEY_FILE = key_file
    settings.TANGLAW_ENCRYPTION_KEYS = list(settings.TANGLAW_ENCRYPTION_KEYS)
    tool = Tool.objects.create(name="t", kind="http", description="d",
                               secret_headers='{"X-Api-Key": "tool-secret"}')
    server = McpServer.objects.create(name="s", url="http://127.0.0.1:1/mcp",
                                      secret_headers='{"Authorization": "Bearer mcp"}')
    from monitoring.models import Channel

    hook = Channel.objects.create(name="h", kind="webhook",
                                  target="https://hooks.example.com/T1/secret-token")
    call_command("rotate_keys")
    new_key = Fernet(key_file.read_text().split()[0].encode())
    with connection.cursor() as cursor:
        for table, column, pk in (("agents_tool", "secret_headers", tool.pk),
                                  ("agents_mcpserver", "secret_headers", server.pk),
                                  ("monitoring_channel", "target", hook.pk)):
            cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])  # noqa: S608
            assert new_key.decrypt(cursor.fetchone()[0].encode())  # re-encrypted with it
    assert Tool.objects.get(pk=tool.pk).secret_headers == '{"X-Api-Key": "tool-secret"}'
