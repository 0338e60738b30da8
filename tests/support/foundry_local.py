"""The real Foundry Local runtime (PyPI `foundry-local-sdk` 2.x, its native library) with
its web service on a loopback port, in a process of its own (the SDK's manager is a
process-wide singleton). Its catalog points at a closed loopback port, so it never
reaches out; it then serves no models, which is all this machine can offer it.

Run as `python foundry_local.py WORKDIR`: prints the service's URL on one line, and
serves until stdin closes.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(workdir: Path) -> None:
    from foundry_local_sdk import Configuration, FoundryLocalManager

    closed = _free_port()  # nothing listens there: the catalog stays empty, offline
    FoundryLocalManager.initialize(Configuration(
        app_name="tanglaw-test", app_data_dir=str(workdir / "data"),
        model_cache_dir=str(workdir / "models"), logs_dir=str(workdir / "logs"),
        web=Configuration.WebService(urls=f"http://127.0.0.1:{_free_port()}"),
        catalog_urls=[(f"http://127.0.0.1:{closed}/asset-gallery/v1.0/models", None)],
        disable_nonessential_telemetry=True))
    manager = FoundryLocalManager.instance
    manager.start_web_service()
    print(manager.urls[0], flush=True)
    sys.stdin.read()  # until the test closes our stdin
    manager.stop_web_service()


class FoundryLocalRuntime:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> FoundryLocalRuntime:
        self.log = (self.workdir / "foundry.log").open("wb")
        self.proc = subprocess.Popen([sys.executable, __file__, str(self.workdir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().decode().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError("Foundry Local did not start: "
                               + (self.workdir / "foundry.log").read_text()[-2000:])
        return self

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.stdin:
                self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
            self.proc = None
        self.log.close()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
