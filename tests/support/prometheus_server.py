"""Debian's Prometheus server, started by the tests on a loopback port with a config they
write (make system-deps installs it), and its `promtool`."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from console.cluster import free_port, stop_process
from tests.support.llama_server import wait_until_up

PROMETHEUS, PROMTOOL = "/usr/bin/prometheus", "/usr/bin/promtool"


def require() -> None:
    if not (shutil.which(PROMETHEUS) and shutil.which(PROMTOOL)):
        pytest.fail("prometheus is missing: run make system-deps")


class PrometheusServer:
    def __init__(self, workdir: Path, config: dict):
        require()
        self.workdir, self.port = workdir, free_port()
        self.config = workdir / "prometheus.yml"
        # YAML is a superset of JSON: the config is written as JSON
        self.config.write_text(json.dumps(config, indent=1))
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PrometheusServer:
        log = self.workdir / "prometheus.log"
        checked = subprocess.run([PROMTOOL, "check", "config", str(self.config)],
                                 capture_output=True, text=True)
        if checked.returncode:
            raise RuntimeError(f"promtool check config: {checked.stdout}{checked.stderr}")
        self.proc = subprocess.Popen(
            [PROMETHEUS, f"--config.file={self.config}",
             f"--storage.tsdb.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=log.open("ab"), stderr=subprocess.STDOUT, cwd=self.workdir)
        if not wait_until_up(self.proc, self.url + "/-/ready", log, 60, "prometheus"):
            raise RuntimeError(f"prometheus did not get ready: {log.read_text()[-3000:]}")
        return self

    def targets(self) -> list[dict]:
        return httpx.get(self.url + "/api/v1/targets", timeout=5).json()["data"][
            "activeTargets"]

    def wait_for(self, check, timeout: float = 60) -> list[dict]:
        """The active targets once `check(targets)` holds; AssertionError with them if not."""
        deadline = time.monotonic() + timeout
        found: list[dict] = []
        while time.monotonic() < deadline:
            found = self.targets()
            if check(found):
                return found
            time.sleep(0.5)
        raise AssertionError(json.dumps(found, indent=1)[:4000])

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None


def check_metrics(text: str) -> subprocess.CompletedProcess:
    require()
    return subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                          text=True)
