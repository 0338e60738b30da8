"""Two real `manage.py monitor` processes on one database: no round or notification twice."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.echo_http import EchoServer
from tests.support.fake_engine import FakeEngine
from tests.support.llama_server import free_port

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def manage(env, *args, **kwargs):
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True, timeout=120, **kwargs)


def test_two_monitors_share_the_work(tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TANGLAW_", "DJANGO_", "DATABASE_", "REDIS_"))}
    env.update({"TANGLAW_DATA_DIR": str(tmp_path / "data"),
                "DJANGO_SETTINGS_MODULE": "console.settings"})
    manage(env, "migrate", "-v0")
    hook = EchoServer().start()
    with FakeEngine("vllm") as engine:
        setup = f"""
from console.models import Backend
from monitoring.models import Channel
Backend.objects.create(name="alive", kind="vllm", base_url="{engine.url}")
Backend.objects.create(name="dead", kind="vllm", base_url="http://127.0.0.1:{free_port()}")
Channel.objects.create(name="hook", kind="webhook", target="http://127.0.0.1:{hook.port}/h")
"""
        manage(env, "shell", "-c", setup)
        logs = [(tmp_path / f"monitor-{i}.log").open("wb") for i in range(2)]
        procs = [subprocess.Popen([sys.executable, "manage.py", "monitor", "--probe-interval",
                                   "2", "--host-interval", "1"], cwd=ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT) for log in logs]
        started = time.monotonic()
        try:
            time.sleep(9)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(20) for proc in procs]
        elapsed = time.monotonic() - started
        health = [r for r in engine.requests if r["path"] == "/health"]
    hook.stop()
    output = "".join((tmp_path / f"monitor-{i}.log").read_text() for i in range(2))
    assert codes == [0, 0], output
    rounds = elapsed / 2
    # one probe of "alive" per 2-second round, whichever monitor claimed it (two without
    # the claim); start-up takes a moment, so allow one round of slack either way
    assert rounds - 2 <= len(health) <= rounds + 1, (len(health), output)
    firing = [r["body"] for r in hook.requests if r["body"]["state"] == "firing"]
    assert len(firing) == 1 and firing[0]["rule"] == "Backend unhealthy", hook.requests
    left = manage(env, "shell", "-c", "from monitoring.models import Heartbeat, Delivery;"
                  "import json; print(json.dumps([Heartbeat.objects.count(), "
                  "Delivery.objects.filter(delivered_at__isnull=False).count()]))")
    assert json.loads(left.stdout.strip().splitlines()[-1]) == [0, 1], left.stdout
