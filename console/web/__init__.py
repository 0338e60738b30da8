"""The web process: Tanglaw's ASGI application under Daphne, uvicorn or granian.

``python -m console.web`` (console/web/__main__.py) starts the server that
``--server`` or ``TANGLAW_ASGI_SERVER`` names; `manage.py serve`, `make run-cluster`
and the systemd unit all start it. Every server here is held to the same contract:

- it listens where it is told (an address and port, or the socket `serve` bound);
- it serves HTTP and WebSockets, and believes no forwarding header itself
  (console.clientaddr decides who the client is, from TANGLAW_TRUSTED_PROXIES);
- its access log masks secrets in the request line (`redact_path`);
- on SIGTERM it stops as Daphne does: every running application is cancelled and
  waited for, so a chat saves its partial reply and tells the browser
  (console.ws.GracefulMixin). Daphne does that itself; uvicorn and granian through
  `Drain`.

Each server is one module with ``serve(application, listen) -> int``, imported only
when chosen, so the others need not be installed.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from console.redact import MASK, SECRET_NAME, redact_text

SERVERS = {"daphne": "console.web.daphne.serve", "uvicorn": "console.web.uvicorn.serve",
           "granian": "console.web.granian.serve"}
DEFAULT_SERVER = "daphne"
# which sockets each server can take over from `manage.py serve` (the rest bind again)
ADOPTS = {"daphne": {"AF_INET"}, "uvicorn": {"AF_INET", "AF_INET6"}, "granian": set()}
# how long a stopping server waits for its applications (systemd's TimeoutStopSec is 30)
STOP_TIMEOUT_S = 20

# query parameter names that carry credentials in the wild (OAuth codes, signed URLs…)
QUERY_SECRET = re.compile(r"token|key|secret|pass|auth|sig|session|jwt|code|credential", re.I)


@dataclass(frozen=True)
class Listen:
    """Where to serve: an inherited listening socket, or an address and port."""

    host: str = "127.0.0.1"
    port: int = 8000
    fd: int | None = None


def access_log_wanted() -> bool:
    """Access lines only at TANGLAW_LOG_LEVEL INFO or DEBUG: by default `make run` prints
    its start lines, warnings and errors, not a line per request. (Read from the
    environment: the server starts before Django's settings are loaded.)"""
    from console.env import log_level

    return log_level() in ("DEBUG", "INFO")


def redact_path(path: str) -> str:
    """The request path with secret-looking query values masked, by the same rules the
    application's log filter (console.redact) applies to everything else."""
    head, sep, query = path.partition("?")
    if not sep:
        return redact_text(unquote(path)) if "%" in path else redact_text(path)
    pairs = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if value and (SECRET_NAME.search(key) or QUERY_SECRET.search(key)):
            value = MASK
        else:
            value = redact_text(value)
        pairs.append(f"{quote(key, safe='')}={quote(value, safe='*')}")
    return f"{redact_text(head)}?{'&'.join(pairs)}"


def redacting(logging_config: dict[str, Any]) -> dict[str, Any]:
    """A server's dictConfig logging with every handler behind RedactingAccessFilter."""
    config: dict[str, Any] = copy.deepcopy(logging_config)
    config["filters"] = {"redact": {"()": "console.web.RedactingAccessFilter"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    return config


class RedactingAccessFilter(logging.Filter):
    """For uvicorn's and granian's loggers: the request path in a log line, redacted.

    uvicorn passes the path (query included) as a positional argument, in its access
    lines and in its WebSocket lines; granian passes a mapping of atoms, the query
    string apart from the path."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, dict) and isinstance(args.get("path"), str):
            query = args.get("query_string") or ""
            full = f"{args['path']}?{query}" if query else args["path"]
            record.args = {**args, "path": redact_path(full), "query_string": ""}
        elif isinstance(args, tuple):
            record.args = tuple(redact_path(a) if isinstance(a, str) and a.startswith("/")
                                else a for a in args)
        return True


class Drain:
    """The application, wrapped so a server can stop the way Daphne does.

    uvicorn closes every WebSocket itself and waits for the applications to finish;
    granian closes them and exits once the lifespan shutdown is answered. Neither
    lets a consumer say goodbye on its socket first. `stop()` cancels every running
    application call and waits for them (at most `timeout` seconds): a chat consumer
    then sends "the server is restarting", closes with 1012 and saves its partial
    reply, exactly as under Daphne. The lifespan shutdown calls `stop()` (granian);
    uvicorn's server calls it before closing connections (console/web/uvicorn.py)."""

    def __init__(self, application, timeout: float = STOP_TIMEOUT_S) -> None:
        self.application = application
        self.timeout = timeout
        self.running: set[asyncio.Task] = set()
        self.stopping = False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self.lifespan(receive, send)
        task = asyncio.current_task()
        if task is not None:
            self.running.add(task)
        try:
            await self.application(scope, receive, send)
        except asyncio.CancelledError:
            if not self.stopping:
                raise
            # cancelled by stop(): ending normally lets the server finish the response
            # without logging the cancellation as a crash
        finally:
            self.running.discard(task)  # type: ignore[arg-type]

    async def stop(self) -> None:
        self.stopping = True
        tasks = [task for task in self.running if not task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout)

    async def lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
