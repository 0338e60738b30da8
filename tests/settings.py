"""Test settings: a throwaway data dir, fixed keys, a fast password hasher."""

import os
import tempfile

os.environ.setdefault("TANGLAW_DATA_DIR", tempfile.mkdtemp(prefix="tanglaw-test-"))
os.environ.setdefault(
    "TANGLAW_ENCRYPTION_KEYS", "Z2V0LXRoZS10ZXN0LWtleS1pbi1wbGFjZS0xMjM0NTY=")

from console.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# probes in tests answer fast; a slow fake must not count as merely degraded
TANGLAW_SLOW_MS = 5000
