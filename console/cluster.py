"""`make run-cluster`: Tanglaw scaled out on one machine, for real.

PostgreSQL and Redis (Debian's packages; throwaway servers in a temp dir unless
DATABASE_URL / REDIS_URL name your own), two web workers on two ports behind
nginx (deploy/nginx-cluster.conf) under the ASGI server TANGLAW_ASGI_SERVER (or
--server) names, Daphne by default, and two monitor processes sharing the work
through database leases. Ctrl-C or SIGTERM stops everything it started.

This module imports no Django: it only starts processes, so the parent never
opens the database the workers use. The production equivalent (systemd units,
an nginx site with TLS) is in deploy/ and docs/deploy.md.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVERS = ("daphne", "uvicorn", "granian")  # console.web.SERVERS (not imported: no Django)
NGINX_TEMPLATE = ROOT / "deploy" / "nginx-cluster.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None, what: str, timeout: float = 60,
                  log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with {proc.returncode}: {tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on port {port} within {timeout:.0f} s")


def stop_process(proc: subprocess.Popen | None, timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _server_binary(pattern: str, package: str) -> str:
    on_path = shutil.which(Path(pattern).name)
    found = sorted(glob.glob(pattern)) or ([on_path] if on_path else [])
    if not found:
        raise RuntimeError(f"{Path(pattern).name} is not installed: apt-get install {package} "
                           f"(make run-cluster and make test do this)")
    return found[-1]


class Postgres:
    """initdb + pg_ctl in a temp dir, on loopback; as the `postgres` user when we are root
    (PostgreSQL refuses to run as root)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tanglaw-pg-"))
        self.port = free_port()
        self.url = f"postgres://tanglaw@127.0.0.1:{self.port}/tanglaw"

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    @staticmethod
    def _bin(name: str) -> str:
        return _server_binary(f"/usr/lib/postgresql/*/bin/{name}", "postgresql")

    def start(self) -> Postgres:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        data = self.dir / "data"
        self._run(self._bin("initdb"), "-D", str(data), "-U", "tanglaw", "--auth=trust",
                  "-E", "UTF8")
        self._run(self._bin("pg_ctl"), "-D", str(data), "-l", str(self.dir / "log"), "-w",
                  "-o", f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                  f"-c max_connections=200", "start")
        self._run(self._bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                  "tanglaw", "tanglaw")
        return self

    def stop(self) -> None:
        try:
            self._run(self._bin("pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "stop")
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


class Redis:
    """redis-server on loopback with no persistence (channel layer and cache only)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="tanglaw-redis-"))
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Redis:
        binary = _server_binary("/usr/bin/redis-server", "redis-server")
        log = self.dir / "log"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no"],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_for_port(self.port, self.proc, "redis-server", log=log)
        return self

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.dir, ignore_errors=True)


def nginx_config(*, port: int, workers: list[int], static_root: Path, prefix: Path) -> str:
    """deploy/nginx-cluster.conf with the ports and paths of this run filled in."""
    text = NGINX_TEMPLATE.read_text()
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s;"
                        for p in workers)
    return (text.replace("@USER@", "user root;" if os.geteuid() == 0 else "")
                .replace("@PREFIX@", str(prefix)).replace("@PORT@", str(port))
                .replace("@UPSTREAMS@", servers).replace("@STATIC_ROOT@", f"{static_root}/"))


class Cluster:
    def __init__(self, *, data_dir: Path, port: int, worker_ports: list[int], monitors: int,
                 host: str = "127.0.0.1", server: str = "daphne") -> None:
        self.data_dir = data_dir
        self.server = server
        self.port = port
        self.worker_ports = worker_ports
        self.monitor_count = monitors
        self.host = host
        self.postgres: Postgres | None = None
        self.redis: Redis | None = None
        self.children: dict[str, subprocess.Popen] = {}
        self.logs = data_dir / "cluster-logs"
        self.nginx_dir = Path(tempfile.mkdtemp(prefix="tanglaw-nginx-"))

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
        env.update({"DJANGO_SETTINGS_MODULE": "console.settings",
                    "TANGLAW_DATA_DIR": str(self.data_dir),
                    "DATABASE_URL": self.postgres.url if self.postgres else os.environ[
                        "DATABASE_URL"],
                    "REDIS_URL": self.redis.url if self.redis else os.environ["REDIS_URL"],
                    # nginx on loopback is the one proxy whose X-Forwarded-For is believed
                    "TANGLAW_TRUSTED_PROXIES": os.environ.get("TANGLAW_TRUSTED_PROXIES",
                                                              "127.0.0.1,::1")})
        return env

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = self.logs / f"{name}.log"
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("ab"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.children[name] = proc
        return proc

    def start(self) -> Cluster:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        if not os.environ.get("DATABASE_URL"):
            self.postgres = Postgres().start()
        if not os.environ.get("REDIS_URL"):
            self.redis = Redis().start()
        env = self.env()
        manage = [sys.executable, "manage.py"]
        for step in (["migrate", "--no-input", "-v0"], ["collectstatic", "--no-input", "-v0"],
                     ["ensure_admin"]):
            done = subprocess.run(manage + step, cwd=ROOT, env=env, capture_output=True,
                                  text=True, timeout=300)
            if done.returncode:
                raise RuntimeError(f"manage.py {step[0]} failed: {done.stderr[-2000:]}")
            if done.stdout.strip():
                print(done.stdout.rstrip())
        for i, port in enumerate(self.worker_ports):
            self._spawn(f"worker-{i + 1}", [sys.executable, "-m", "console.web", "--server",
                                           self.server, "-b", "127.0.0.1", "-p", str(port),
                                           "console.asgi:application"], env)
        for i in range(self.monitor_count):
            self._spawn(f"monitor-{i + 1}", manage + ["monitor"], env)
        for i, port in enumerate(self.worker_ports):
            wait_for_port(port, self.children[f"worker-{i + 1}"], f"worker-{i + 1}",
                          log=self.logs / f"worker-{i + 1}.log")
        conf = self.nginx_dir / "nginx.conf"
        conf.write_text(nginx_config(port=self.port, workers=self.worker_ports,
                                     static_root=self.data_dir / "static",
                                     prefix=self.nginx_dir))
        nginx = _server_binary("/usr/sbin/nginx", "nginx-light")
        self._spawn("nginx", [nginx, "-p", str(self.nginx_dir), "-c", str(conf), "-g",
                              "daemon off;"], env)
        wait_for_port(self.port, self.children["nginx"], "nginx", log=self.logs / "nginx.log")
        return self

    def state(self) -> dict:
        return {"url": f"http://{self.host}:{self.port}",
                "workers": [f"http://127.0.0.1:{p}" for p in self.worker_ports],
                "server": self.server,
                "pids": {name: proc.pid for name, proc in self.children.items()},
                "database_url": self.env()["DATABASE_URL"], "redis_url": self.env()["REDIS_URL"],
                "logs": str(self.logs)}

    def stop(self) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # once: the server lets live chats save
        for name, proc in self.children.items():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                print(f"{name} did not stop in 30 s; killing it", file=sys.stderr)
                proc.kill()
        for server in (self.redis, self.postgres):
            if server:
                server.stop()
        shutil.rmtree(self.nginx_dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make run-cluster", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")),
                        help="nginx listens here (default: PORT or 8000)")
    parser.add_argument("--worker-ports", default="",
                        help="comma-separated worker ports (default: PORT+1,PORT+2)")
    parser.add_argument("--server", choices=SERVERS, type=str.lower,
                        default=(os.environ.get("TANGLAW_ASGI_SERVER") or "daphne").strip().lower(),
                        help="the workers' ASGI server (default: TANGLAW_ASGI_SERVER, else "
                             "daphne)")
    parser.add_argument("--monitors", type=int, default=2)
    parser.add_argument("--state", type=Path, help="write pids and URLs here as JSON once up")
    args = parser.parse_args(argv)
    workers = ([int(p) for p in args.worker_ports.split(",") if p] or
               [args.port + 1, args.port + 2])
    data_dir = Path(os.environ.get("TANGLAW_DATA_DIR") or ROOT / "data").resolve()
    if args.server not in SERVERS:  # a default from the environment is not checked
        parser.error(f"TANGLAW_ASGI_SERVER={args.server!r} is not one of {', '.join(SERVERS)}")
    cluster = Cluster(data_dir=data_dir, port=args.port, worker_ports=workers,
                      monitors=args.monitors, server=args.server)
    stopping = False

    def stop(signum, frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        cluster.start()
        state = cluster.state()
        if args.state:
            args.state.write_text(json.dumps(state))
        print(f"Tanglaw cluster is running at {state['url']}/  ({args.server} workers "
              f"{', '.join(state['workers'])}; {args.monitors} monitors; logs in {state['logs']})"
              f"\nPostgreSQL: {'yours' if os.environ.get('DATABASE_URL') else 'throwaway'}, "
              f"Redis: {'yours' if os.environ.get('REDIS_URL') else 'throwaway'}."
              f"   (Ctrl-C stops)", flush=True)
        reported: set[str] = set()
        while not stopping:
            for name, proc in cluster.children.items():
                if proc.poll() is not None and name not in reported:
                    reported.add(name)
                    print(f"{name} exited with {proc.returncode} (see {cluster.logs}/{name}.log)",
                          flush=True)
            time.sleep(0.5)
    except RuntimeError as exc:
        print(f"run-cluster: {exc}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        print("Tanglaw cluster stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
