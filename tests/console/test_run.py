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
