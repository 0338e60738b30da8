"""Test settings: a throwaway data dir, fixed keys, a fast password hasher."""

import os
import tempfile

os.environ.setdefault("TANGLAW_DATA_DIR", tempfile.mkdtemp(prefix="tanglaw-test-"))
# monitors the tests start keep the test's own priority: on a busy CI machine a niced
# monitor could be starved past a test's wait (yield_cpu is tested on its own)
os.environ.setdefault("TANGLAW_MONITOR_NICE", "0")
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
# a file, not SQLite's shared-cache memory database: threads (model pulls, the monitor's
# claims) then get WAL and the busy timeout instead of "database table is locked"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    DATABASES["default"]["TEST"] = {  # noqa: F405
        "NAME": os.path.join(os.environ["TANGLAW_DATA_DIR"], "test.sqlite3")}
# the suite makes many API calls as the same few users: rate limits are tested on their own
TANGLAW_API_RATE = "100000/m"
TANGLAW_CHAT_RATE = "100000/m"
# gateway records are written by the request that finished, not a background thread
# (tests/gateway/test_usage.py runs the thread on its own)
TANGLAW_GATEWAY_FLUSH_S = 0
TANGLAW_TRACE_FLUSH_S = 0
