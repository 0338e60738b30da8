"""`manage.py serve --server X` for each ASGI server Tanglaw supports (console/web/): the
same contract under Daphne, uvicorn and granian. Pages and both sockets work, a client's
X-Forwarded-For is not believed, the access log hides a token from the query string, and
SIGTERM in the middle of a streamed reply saves the partial, tells the socket (where the
server still delivers frames then) and ends the process cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.llama_server import free_port, wait_until_up
from tests.support.scripted_openai import finish, text

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "asgi-server-passphrase"
SECRET = "tgl_supersecretvalue1"


def rows(db: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture(params=["daphne", "uvicorn", "granian"])
def served(request, tmp_path):
    pytest.importorskip(request.param)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TANGLAW_", "DJANGO_"))}
    env.update({"TANGLAW_DATA_DIR": str(tmp_path / "data"), "PORT": str(port),
                "DJANGO_SETTINGS_MODULE": "console.settings", "PYTHONUNBUFFERED": "1",
                "TANGLAW_ADMIN_PASSWORD": PASSWORD,
                "TANGLAW_LOG_LEVEL": "INFO"})  # the access log is on from INFO
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "manage.py", "serve", "--no-monitor", "--server",
                             request.param], cwd=ROOT, env=env, stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until_up(proc, base + "/login/", log, 90, request.param), log.read_text()
        yield {"server": request.param, "base": base, "proc": proc, "log": log, "env": env,
               "db": tmp_path / "data" / "tanglaw.sqlite3"}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def sign_in(base: str, headers: dict[str, str]) -> httpx.Client:
    client = httpx.Client(base_url=base, timeout=30)
    client.get("/login/")
    answer = client.post("/login/", headers={"Referer": base, **headers}, data={
        "username": "admin", "password": PASSWORD,
        "csrfmiddlewaretoken": client.cookies["csrftoken"]})
    assert answer.status_code == 302, answer.text
    return client


def api_token(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "manage.py", "create_api_token", "admin"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def open_socket(base: str, path: str, client: httpx.Client):
    from websockets.asyncio.client import connect

    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    return await connect("ws" + base.removeprefix("http") + path, origin=base,
                         additional_headers={"Cookie": cookie}, open_timeout=15)


def test_the_server_serves_hides_secrets_and_stops_gracefully(served, scripted):
    from websockets.exceptions import ConnectionClosed

    base, proc = served["base"], served["proc"]
    page = httpx.get(base + "/login/", timeout=10)
    assert page.status_code == 200 and "Sign in to Tanglaw" in page.text
    asked = httpx.get(f"{base}/login/?token={SECRET}&api_key=plain-secret-value&next=/backends/",
                      timeout=10)
    assert asked.status_code == 200
    browser = sign_in(base, {"X-Forwarded-For": "203.0.113.7", "X-Real-IP": "203.0.113.8"})

    api = {"Authorization": f"Bearer {api_token(served['env'])}"}
    with httpx.Client(base_url=base, headers=api, timeout=30) as client:
        backend = client.post("/api/backends", json={
            "name": "scripted", "kind": "openai_compatible", "base_url": scripted.url})
        assert backend.status_code == 201, backend.text
        agent = client.post("/api/agents", json={
            "name": "talker", "backend_id": backend.json()["id"], "model": "scripted-1",
            "max_tokens": 2000}).json()
    scripted.add(*[item for i in range(200) for item in (("sleep", 0.05), *text(f"w{i} "))],
                 *finish())

    async def journey() -> tuple[list[dict], int | None, float]:
        jobs = await open_socket(base, "/ws/jobs/", browser)
        await asyncio.wait_for(await jobs.ping(), 10)  # open and answering
        chat = await open_socket(base, "/ws/chat/", browser)
        await chat.send(json.dumps({"type": "user_message", "agent_id": agent["id"],
                                    "conversation_id": None, "text": "tell me everything"}))
        frames: list[dict] = []
        stopped = None
        try:
            async with asyncio.timeout(60):
                while True:
                    frames.append(json.loads(await chat.recv()))
                    seen = "".join(f["text"] for f in frames if f["type"] == "delta")
                    if stopped is None and "w10 " in seen:
                        stopped = time.monotonic()
                        proc.send_signal(signal.SIGTERM)  # serve sends the server one SIGTERM
        except ConnectionClosed:
            pass
        await jobs.close()
        return frames, chat.close_code, stopped

    frames, close_code, stopped = asyncio.run(journey())
    assert stopped is not None, frames
    assert proc.wait(30) == 0
    assert time.monotonic() - stopped < 25
    output = served["log"].read_text()
    assert "Tanglaw stopped." in output and "Traceback" not in output, output

    # the reply so far is saved, marked incomplete, once
    [(content, incomplete)] = rows(served["db"], "SELECT content, incomplete FROM agents_message "
                                                 "WHERE role = 'assistant'")
    assert incomplete == 1 and content.startswith("w0 w1 ") and "w10 " in content
    assert rows(served["db"], "SELECT outcome FROM agents_run") == [("cancelled",)]
    assert rows(served["db"], "SELECT count(*) FROM console_auditevent "
                              "WHERE action = 'agent.turn'") == [(1,)]
    told = [f["code"] for f in frames if f["type"] == "error"]
    if served["server"] == "granian":
        # granian delivers no frame once it is stopping: the socket just drops
        assert told == [] and close_code == 1006, (frames[-3:], close_code)
    else:  # the browser was told: an error frame, then "service restart"
        assert told == ["server_shutdown"], frames[-3:]
        # (Daphne's reactor may stop before its close frame is on the wire)
        assert close_code in ((1012, 1006) if served["server"] == "daphne" else (1012,))

    # the sign-in is recorded from the peer, not from the headers the client wrote
    assert rows(served["db"], "SELECT ip FROM console_auditevent WHERE action = 'auth.login'"
                ) == [("127.0.0.1",)]
    # the request line is logged with the token masked
    assert "/login/?token=" in output and "next=/backends/" in output.replace("%2F", "/")
    assert SECRET not in output and "plain-secret-value" not in output
