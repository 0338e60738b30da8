"""`make run-cluster` for real: PostgreSQL + Redis, two Daphne workers behind nginx, two
monitors. A chat streams through worker A while a page on worker B gets live job frames
(the channel layer crosses processes through Redis); one monitor is killed and the other
keeps probing without a duplicate round; the audit chain written by both workers holds."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from console.cluster import free_port
from tests.support.console_server import signed_in
from tests.support.fake_engine import FakeEngine
from tests.support.scripted_openai import ScriptedOpenAI, finish, text

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "cluster-test-passphrase"


@pytest.fixture
def cluster(tmp_path):
    for module in ("psycopg", "channels_redis", "websockets"):
        pytest.importorskip(module, reason="part of the test extra (make test installs it)")
    state = tmp_path / "cluster.json"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TANGLAW_", "DJANGO_", "DATABASE_", "REDIS_"))}
    env.update({"TANGLAW_DATA_DIR": str(tmp_path / "data"), "TANGLAW_ADMIN_PASSWORD": PASSWORD})
    port, a, b = free_port(), free_port(), free_port()
    log = (tmp_path / "cluster.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "console.cluster", "--port", str(port),
                             "--worker-ports", f"{a},{b}", "--state", str(state)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while not state.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail((tmp_path / "cluster.log").read_text())
        time.sleep(0.3)
    info = json.loads(state.read_text())
    info["env"] = {**env, "DATABASE_URL": info["database_url"], "REDIS_URL": info["redis_url"],
                   "DJANGO_SETTINGS_MODULE": "console.settings"}
    info["proc"] = proc
    yield info
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(90) == 0, (tmp_path / "cluster.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()


def manage(cluster, *args) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=cluster["env"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def query(cluster, code: str):
    out = manage(cluster, "shell", "-c", f"import json\n{code}")
    return json.loads(out.strip().splitlines()[-1])


def session(base: str) -> httpx.Client:
    """A signed-in browser-like client (session cookie in PostgreSQL: valid on every worker)."""
    return signed_in(base, PASSWORD)


async def socket(base: str, path: str, client: httpx.Client):
    from websockets.asyncio.client import connect

    cookie = "; ".join(f"{k}={v}" for k, v in client.cookies.items())
    return await connect("ws" + base.removeprefix("http") + path, origin=base,
                         additional_headers={"Cookie": cookie})


def wait_for(read, ok, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if ok(value) or time.monotonic() > deadline:
            assert ok(value), value
            return value
        time.sleep(1)


async def frames_until(ws, done, timeout: float = 30) -> list[dict]:
    seen: list[dict] = []
    async with asyncio.timeout(timeout):
        while not seen or not done(seen[-1]):
            seen.append(json.loads(await ws.recv()))
    return seen


def test_chat_on_a_live_jobs_on_b_monitors_and_audit(cluster):
    a, b = cluster["workers"]
    token = manage(cluster, "create_api_token", "admin").strip()
    api = {"Authorization": f"Bearer {token}"}

    # nginx in front: pages proxied, static files served by nginx itself
    front = httpx.get(cluster["url"] + "/login/", timeout=10)
    assert front.status_code == 200 and front.headers["server"].startswith("nginx")
    static = httpx.get(cluster["url"] + "/static/js/playground.js", timeout=10)
    assert static.status_code == 200 and "max-age=3600" in static.headers["cache-control"]

    scripted = ScriptedOpenAI().start()
    ollama = FakeEngine("ollama", pull_gap_s=0.1).start()
    try:
        with httpx.Client(base_url=a, headers=api, timeout=20) as on_a, \
                httpx.Client(base_url=b, headers=api, timeout=20) as on_b:
            chat_backend = on_a.post("/api/backends", json={
                "name": "scripted", "kind": "openai_compatible", "base_url": scripted.url})
            assert chat_backend.status_code == 201, chat_backend.text
            pull_backend = on_b.post("/api/backends", json={
                "name": "ollama", "kind": "ollama", "base_url": ollama.url}).json()
            agent = on_b.post("/api/agents", json={
                "name": "talker", "backend_id": chat_backend.json()["id"],
                "model": "scripted-1"}).json()
            assert on_a.put("/api/monitor/settings",
                            json={"probe_interval_s": 5}).status_code == 200

            browser_a, browser_b = session(a), session(b)
            scripted.add(*[item for i in range(40) for item in (("sleep", 0.05),
                                                               *text(f"w{i} "))], *finish())

            async def journey():
                jobs_b = await socket(b, "/ws/jobs/", browser_b)
                chat_a = await socket(a, "/ws/chat/", browser_a)
                await chat_a.send(json.dumps({"type": "user_message", "agent_id": agent["id"],
                                              "conversation_id": None, "text": "hello"}))
                pull = on_a.post(f"/api/backends/{pull_backend['id']}/pull",
                                 json={"model": "qwen2.5:0.5b"})
                assert pull.status_code == 202, pull.text
                chat, jobs = await asyncio.gather(
                    frames_until(chat_a, lambda f: f["type"] in ("done", "error")),
                    frames_until(jobs_b, lambda f: f.get("state") in ("succeeded", "failed")))
                await chat_a.close()
                await jobs_b.close()
                return chat, jobs

            chat, jobs = asyncio.run(journey())
            assert chat[-1]["type"] == "done", chat[-1]
            streamed = "".join(f["text"] for f in chat if f["type"] == "delta")
            assert streamed == "".join(f"w{i} " for i in range(40))
            # the pull ran on worker A; worker B's socket saw it move and finish
            assert jobs[-1]["state"] == "succeeded" and jobs[-1]["model"] == "qwen2.5:0.5b"
            percents = [f["percent"] for f in jobs if f["type"] == "job"]
            assert len(percents) >= 3 and percents == sorted(percents), percents

            # the turn worker A stored is on worker B at once (one database)
            conversation = on_b.get(f"/api/conversations/{chat[-1]['conversation_id']}")
            assert conversation.status_code == 200
            assert conversation.json()["messages"][-1]["content"] == streamed

            # two monitors, one round per interval; kill the one doing the rounds (as a
            # crash would: no goodbye) and the other takes over when its lease runs out
            scope = f"backend:{chat_backend.json()['id']}"
            probes_sql = f"""
from monitoring.models import Lease, Sample
print(json.dumps({{"owner": Lease.objects.get(name="round").owner,
                  "ts": [s.ts.timestamp() for s in Sample.objects.filter(
                      metric="backend_up", scope="{scope}").order_by("ts")]}}))
"""
            probes = wait_for(lambda: query(cluster, probes_sql), lambda p: len(p["ts"]) >= 3)
            pid = int(probes["owner"].rsplit(":", 1)[1])
            assert pid in (cluster["pids"]["monitor-1"], cluster["pids"]["monitor-2"])
            os.kill(pid, signal.SIGKILL)
            killed_at = time.time()
            probes = wait_for(lambda: query(cluster, probes_sql),
                              lambda p: len([t for t in p["ts"] if t > killed_at]) >= 2)
            assert probes["owner"] != f"{probes['owner'].rsplit(':', 1)[0]}:{pid}"
            gaps = [round(y - x, 2) for x, y in zip(probes["ts"], probes["ts"][1:],
                                                    strict=False)]
            assert min(gaps) >= 4, gaps  # never two rounds for one interval
            health = on_b.get("/api/health").json()
            up = {row["name"]: row["status"] for row in health["backends"]}
            assert up == {"scripted": "healthy", "ollama": "healthy"}, health
    finally:
        scripted.stop()
        ollama.stop()

    # the chain written by both workers (and both monitors) verifies
    verified = manage(cluster, "verify_audit")
    assert verified.startswith("OK: "), verified
    actions = query(cluster, """
from console.models import AuditEvent
print(json.dumps(sorted(set(AuditEvent.objects.values_list("action", flat=True)))))""")
    for action in ("backend.created", "agent.created", "agent.turn", "model.pull_started"):
        assert action in actions, actions


def test_production_nginx_site_is_valid(tmp_path):
    """deploy/nginx-tanglaw.conf passes `nginx -t` (certificate paths swapped for a
    throwaway self-signed pair)."""
    import shutil
    from datetime import UTC, datetime, timedelta

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.fail("nginx is not installed: make test installs nginx-light")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tanglaw.example.org")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    site = (ROOT / "deploy" / "nginx-tanglaw.conf").read_text()
    site = site.replace("/etc/ssl/tanglaw/fullchain.pem", str(tmp_path / "cert.pem")).replace(
        "/etc/ssl/tanglaw/privkey.pem", str(tmp_path / "key.pem"))
    assert "proxy_set_header Upgrade $http_upgrade" in site and "ssl_certificate" in site
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log stderr; events {{}}\n"
        f"http {{ include /etc/nginx/mime.types; access_log off; "
        f"include {tmp_path}/site.conf; }}\n")
    done = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr
