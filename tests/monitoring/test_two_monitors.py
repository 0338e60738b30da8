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
                "DJANGO_SETTINGS_MODULE": "console.settings",
                "TANGLAW_LOG_LEVEL": "INFO"})  # the rounds are counted from their INFO lines
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
        try:
            # wait for what the monitors record, not for a length of time: a loaded
            # machine may spend seconds starting them
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline and len(_rounds(tmp_path)) < 4:
                time.sleep(0.5)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(20) for proc in procs]
        health = [r for r in engine.requests if r["path"] == "/health"]
    hook.stop()
    output = "".join((tmp_path / f"monitor-{i}.log").read_text() for i in range(2))
    assert codes == [0, 0], output
    rounds = _rounds(tmp_path)
    assert len(rounds) >= 4, output
    # each round was claimed by one monitor for 0.9 of the 2 s interval: by the claim
    # times the database handed out, no two rounds overlap…
    claims = sorted(claimed for claimed, _ in rounds)
    gaps = [(b - a).total_seconds() for a, b in zip(claims, claims[1:], strict=False)]
    assert min(gaps) >= 1.8 - 0.01, (gaps, output)
    # …and each round probed "alive" once (two monitors without the claim: twice)
    assert len(health) == len(rounds), (len(health), len(rounds), output)
    assert len({worker for _, worker in rounds}) >= 1
    firing = [r["body"] for r in hook.requests if r["body"]["state"] == "firing"]
    assert len(firing) == 1 and firing[0]["rule"] == "Backend unhealthy", hook.requests
    left = manage(env, "shell", "-c", "from monitoring.models import Heartbeat, Delivery;"
                  "import json; print(json.dumps([Heartbeat.objects.count(), "
                  "Delivery.objects.filter(delivered_at__isnull=False).count()]))")
    assert json.loads(left.stdout.strip().splitlines()[-1]) == [0, 1], left.stdout


def _rounds(tmp_path) -> list[tuple]:
    """(claimed_at, worker) of every round the monitors logged as done."""
    import re
    from datetime import datetime

    found = []
    for i in range(2):
        log = tmp_path / f"monitor-{i}.log"
        text = log.read_text() if log.exists() else ""
        for claimed, worker in re.findall(r"round: \{'claimed_at': '([^']+)', 'worker': "
                                          r"'([^']+)'", text):
            found.append((datetime.fromisoformat(claimed), worker))
    return found
