"""`make run`'s command: prints the URL and credentials, serves, stops cleanly on Ctrl-C."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.llama_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_serve_starts_prints_credentials_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("TANGLAW_", "DJANGO_"))}
    environment.update({"TANGLAW_DATA_DIR": str(tmp_path / "data"), "PORT": str(port),
                        "DJANGO_SETTINGS_MODULE": "console.settings", "PYTHONUNBUFFERED": "1"})
    proc = subprocess.Popen([sys.executable, "manage.py", "serve"], cwd=ROOT, env=environment,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, lines = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "Tanglaw is running at" in line:
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}/" in output and "password:" in output
        password = output.split("password:")[1].split()[0]
        for _ in range(100):
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/login/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert response.status_code == 200 and "Sign in to Tanglaw" in response.text
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", follow_redirects=False)
        csrf = client.get("/login/").cookies["csrftoken"]
        login = client.post("/login/", data={"username": "admin", "password": password,
                                             "csrfmiddlewaretoken": csrf})
        assert login.status_code == 302
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
        assert "Tanglaw stopped." in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    # a second run reuses the data: no new admin, same secret
    assert (tmp_path / "data" / "tanglaw.sqlite3").exists()


def _serve_env(tmp_path, port, **extra):
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith(("TANGLAW_", "DJANGO_", "LOG_LEVEL"))}
    environment.update({"TANGLAW_DATA_DIR": str(tmp_path / "data"), "PORT": str(port),
                        "DJANGO_SETTINGS_MODULE": "console.settings", "PYTHONUNBUFFERED": "1",
                        "TANGLAW_ADMIN_PASSWORD": "run-test-passphrase", **extra})
    return environment


def test_make_run_is_quiet_by_default(tmp_path):
    """Start lines, then nothing for ordinary traffic: no access line per request, no
    line (and no traceback) for a 404 or a refused 403, nothing per monitor round."""
    port = free_port()
    log = tmp_path / "serve.log"
    proc = subprocess.Popen([sys.executable, "manage.py", "serve"], cwd=ROOT,
                            env=_serve_env(tmp_path, port), stdout=log.open("wb"),
                            stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                httpx.get(base + "/login/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        client = httpx.Client(base_url=base, follow_redirects=False)
        csrf = client.get("/login/").cookies["csrftoken"]
        assert client.post("/login/", data={"username": "admin",
                                            "password": "run-test-passphrase",
                                            "csrfmiddlewaretoken": csrf}).status_code == 302
        assert client.get("/no-such-page/").status_code == 404
        assert client.get("/backends/999999/").status_code == 404
        # an anonymous API call is refused; an unknown object is a 404 with its reason
        assert httpx.get(base + "/api/backends").status_code in (401, 403)
        assert client.get("/api/backends/999999").status_code == 404
        time.sleep(3)  # a monitor round or two
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert any("Tanglaw is running at" in line for line in lines), lines
    assert "Traceback" not in log.read_text()
    assert not any("/no-such-page/" in line or "/login/" in line or "999999" in line
                   or "round:" in line for line in lines), lines
    # the start lines (admin, address, data directory) and the stop line, nothing else
    assert len(lines) <= 8, lines


def test_a_taken_port_is_a_clear_error_and_nothing_keeps_running(tmp_path):
    import socket

    import psutil

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        proc = subprocess.Popen([sys.executable, "manage.py", "serve"], cwd=ROOT,
                                env=_serve_env(tmp_path, port), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        output, _ = proc.communicate(timeout=60)
    finally:
        holder.close()
    assert proc.returncode != 0
    assert f"port {port}" in output and f"PORT={port + 1} make run" in output
    assert "running at" not in output and "Traceback" not in output
    assert not any(str(ROOT / "manage.py") in " ".join(p.cmdline()) and "monitor" in p.cmdline()
                   for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"])


def test_the_monitor_stops_when_the_web_server_dies_and_the_access_log_hides_tokens(tmp_path):
    import psutil

    port = free_port()
    proc = subprocess.Popen([sys.executable, "manage.py", "serve"], cwd=ROOT,
                            env=_serve_env(tmp_path, port, TANGLAW_LOG_LEVEL="INFO"),
                            stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if "Tanglaw is running at" in proc.stdout.readline():
                break
        for _ in range(100):
            try:
                httpx.get(f"http://127.0.0.1:{port}/login/?token=tgl_supersecretvalue1"
                          f"&api_key=plain-secret-value&next=/backends/", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        children = psutil.Process(proc.pid).children()
        web = next(c for c in children if "console.web" in c.cmdline())
        monitor = next(c for c in children if "monitor" in c.cmdline())
        web.kill()
        proc.wait(timeout=20)
        assert not monitor.is_running() or monitor.status() == psutil.STATUS_ZOMBIE
        log = proc.stdout.read()
        assert "/login/?token=" in log and "next=/backends/" in log.replace("%2F", "/")
        assert "tgl_supersecretvalue1" not in log and "plain-secret-value" not in log
    finally:
        if proc.poll() is None:
            proc.kill()
