"""console.web's pieces that every ASGI server shares: the access-log redaction as
uvicorn's and granian's loggers hand it their lines, and the Drain that stops the
applications the way Daphne does."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

from console.web import Drain, RedactingAccessFilter

ROOT = Path(__file__).resolve().parents[2]
SECRET = "tgl_supersecretvalue1"


def formatted(args, fmt: str) -> str:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, fmt, args, None)
    assert RedactingAccessFilter().filter(record)
    return record.getMessage()


def test_uvicorn_access_and_websocket_lines_lose_the_secrets():
    line = formatted(("127.0.0.1:5000", "GET", f"/login/?token={SECRET}&next=/x/", "1.1", 200),
                     '%s - "%s %s HTTP/%s" %d')
    assert SECRET not in line and "token=********" in line and "next=%2Fx%2F" in line
    socket = formatted(("127.0.0.1:5000", f"/ws/chat/?api_key=sk-{'a' * 20}"),
                       '%s - "WebSocket %s" [accepted]')
    assert "sk-aaaa" not in socket and "/ws/chat/?api_key=********" in socket


def test_granian_access_lines_lose_the_secrets_and_keep_the_path():
    from granian.log import DEFAULT_ACCESSLOG_FMT

    atoms = {"addr": "127.0.0.1", "time": "now", "dt_ms": 1.0, "status": 200,
             "path": "/login/", "query_string": f"token={SECRET}&next=/x/", "method": "GET",
             "scheme": "http", "protocol": "HTTP/1.1"}
    line = formatted((atoms,), DEFAULT_ACCESSLOG_FMT)
    assert SECRET not in line and '"GET /login/?token=********&next=%2Fx%2F HTTP/1.1"' in line
    plain = formatted(({**atoms, "query_string": ""},), DEFAULT_ACCESSLOG_FMT)
    assert '"GET /login/ HTTP/1.1"' in plain


def test_drain_cancels_running_calls_waits_for_their_goodbye_and_answers_the_lifespan():
    said: list[str] = []

    async def app(scope, receive, send):
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # a consumer saving its partial reply
            said.append(scope["path"])
            raise

    async def main():
        drain = Drain(app)
        calls = [asyncio.create_task(drain({"type": t, "path": f"/{t}"}, None, None))
                 for t in ("http", "websocket")]
        await asyncio.sleep(0.01)
        lifespan_in = asyncio.Queue()
        sent: list[dict] = []

        async def send(message):
            sent.append(message)

        life = asyncio.create_task(drain({"type": "lifespan"}, lifespan_in.get, send))
        await lifespan_in.put({"type": "lifespan.startup"})
        await lifespan_in.put({"type": "lifespan.shutdown"})
        await asyncio.wait_for(life, 5)
        # both ended normally (the cancellation is not a crash) after their goodbye
        assert [c.done() and not c.cancelled() and c.exception() is None for c in calls] == [
            True, True]
        return [m["type"] for m in sent]

    assert asyncio.run(main()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert sorted(said) == ["/http", "/websocket"]


def test_an_unknown_server_is_refused_naming_the_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANGLAW_", "DJANGO_"))}
    env.update({"TANGLAW_DATA_DIR": str(tmp_path / "data"), "TANGLAW_ASGI_SERVER": "gunicorn",
                "DJANGO_SETTINGS_MODULE": "console.settings"})
    for command in (["manage.py", "check"], ["-m", "console.web"]):
        done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode != 0
        assert "TANGLAW_ASGI_SERVER" in done.stderr and "'gunicorn'" in done.stderr, done.stderr
        assert "daphne, uvicorn, granian" in done.stderr
