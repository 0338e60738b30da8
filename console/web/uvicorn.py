"""uvicorn with uvloop, httptools and the websockets library (its sans-I/O protocol).

No proxy headers (uvicorn believes X-Forwarded-For from loopback by default), no
lifespan (the application has none), the access log and the WebSocket lines through
`RedactingAccessFilter`. On SIGTERM the server stops accepting, then `Drain.stop()`
cancels the applications and waits for them as Daphne would, and only then does
uvicorn close what is left.
"""

from __future__ import annotations

import socket
from typing import Any

import uvicorn
from django.utils.module_loading import import_string
from uvicorn.config import LOGGING_CONFIG

from console.web import STOP_TIMEOUT_S, Drain, Listen, access_log_wanted, redacting


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()  # no new connections while the running ones say goodbye
        await self.drain.stop()
        await super().shutdown(sockets)


def log_config() -> dict[str, Any]:
    return redacting(LOGGING_CONFIG)


def serve(application: str, listen: Listen) -> int:
    drain = Drain(import_string(application.replace(":", ".")))
    config = uvicorn.Config(
        drain, host=listen.host, port=listen.port, loop="uvloop", http="httptools",
        ws="websockets-sansio", lifespan="off", proxy_headers=False, server_header=False,
        # chat frames are a few dozen bytes: compressing each one cost ~5 % of the
        # server's CPU per relayed token (bench: docs/benchmarks.md)
        ws_per_message_deflate=False,
        log_config=log_config(), access_log=access_log_wanted(),
        timeout_graceful_shutdown=STOP_TIMEOUT_S)
    # an inherited socket keeps its own family (IPv4 or IPv6)
    sockets = [socket.socket(fileno=listen.fd)] if listen.fd is not None else None
    Server(config, drain).run(sockets=sockets)
    return 0
