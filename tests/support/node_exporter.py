"""Debian's prometheus-node-exporter, started on a loopback port by the tests (make
system-deps installs it). Stopped and started again on the same port, it is a host
that goes down and comes back."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from console.cluster import free_port, stop_process
from tests.support.llama_server import wait_until_up

BINARY = "/usr/bin/prometheus-node-exporter"
# the collectors Tanglaw reads: quicker to answer than all the defaults
COLLECTORS = ("cpu", "meminfo", "filesystem", "netdev", "loadavg")


class NodeExporter:
    def __init__(self, workdir: Path):
        if not shutil.which(BINARY):
            pytest.fail("prometheus-node-exporter is missing: run make system-deps")
        self.workdir, self.port = workdir, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> NodeExporter:
        log = self.workdir / "node_exporter.log"
        argv = [BINARY, f"--web.listen-address=127.0.0.1:{self.port}",
                "--collector.disable-defaults",
                *(f"--collector.{c}" for c in COLLECTORS)]
        self.proc = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)
        if not wait_until_up(self.proc, self.url, log, 30, "prometheus-node-exporter"):
            raise RuntimeError(f"prometheus-node-exporter did not answer: {log.read_text()}")
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
