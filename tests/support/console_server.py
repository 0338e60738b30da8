"""Run the real console (`manage.py serve`: Daphne, SQLite file) for browser tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.llama_server import free_port, wait_until_up

ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "browser-test-passphrase"


class ConsoleServer:
    def __init__(self, data_dir: Path, **extra_env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("TANGLAW_", "DJANGO_", "DATABASE_", "REDIS_"))}
        self.env.update({"TANGLAW_DATA_DIR": str(data_dir), "PORT": str(self.port),
                         "DJANGO_SETTINGS_MODULE": "console.settings",
                         "TANGLAW_ADMIN_PASSWORD": ADMIN_PASSWORD, **extra_env})
        self.log = data_dir.parent / "console.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> ConsoleServer:
        self.proc = subprocess.Popen([sys.executable, "manage.py", "serve"], cwd=ROOT,
                                     env=self.env, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT)
        if wait_until_up(self.proc, self.url + "/login/", self.log, timeout, "console"):
            return self
        self.stop()
        raise RuntimeError("console did not start in time")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def signed_in(base: str, password: str, username: str = "admin") -> httpx.Client:
    """An httpx client signed in through the login form, as a browser would be (session
    and CSRF cookies); raises if the sign-in is refused."""
    client = httpx.Client(base_url=base, timeout=30)
    client.get("/login/")
    answer = client.post("/login/", data={
        "username": username, "password": password,
        "csrfmiddlewaretoken": client.cookies["csrftoken"]}, headers={"Referer": base})
    if answer.status_code != 302:
        client.close()
        raise RuntimeError(f"sign-in as {username} refused: HTTP {answer.status_code}")
    return client


class GatewayConsole(ConsoleServer):
    """The real console with what a gateway test needs: the admin signed in (`admin`,
    `csrf` headers), one backend and one agent made through the API, and a key from
    `manage.py create_api_token` (`key`), as an operator would set it up."""

    def prepare(self, backend: dict, agent: dict) -> GatewayConsole:
        import subprocess

        self.admin = signed_in(self.url, ADMIN_PASSWORD)
        self.csrf = {"X-CSRFToken": self.admin.cookies["csrftoken"], "Referer": self.url}
        made = self.admin.post("/api/backends", headers=self.csrf, json=backend)
        if made.status_code != 201:
            raise RuntimeError(f"backend not made: {made.text}")
        self.backend_id = made.json()["id"]
        created = self.admin.post("/api/agents", headers=self.csrf,
                                  json={"backend_id": self.backend_id, "tool_ids": [], **agent})
        if created.status_code != 201:
            raise RuntimeError(f"agent not made: {created.text}")
        key = subprocess.run(
            [sys.executable, "manage.py", "create_api_token", "admin", "--name", "tests"],
            cwd=ROOT, env=self.env, capture_output=True, text=True, check=True)
        self.key = key.stdout.strip().splitlines()[-1]
        return self

    def stop(self) -> None:
        admin = getattr(self, "admin", None)
        if admin is not None:
            admin.close()
        super().stop()
