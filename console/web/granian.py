"""granian (Rust, hyper) with its ASGI interface, one worker process.

granian binds its own socket (it cannot take over the one `serve` bound), believes
no forwarding header unless wrapped to, and logs access lines through Python's
logging, where `RedactingAccessFilter` masks the query. Its worker imports the
application through `application()` (granian's factory target, so the parent process
never imports Django) wrapped in `GranianDrain`: granian's lifespan shutdown, sent
on SIGTERM, cancels the running applications and waits for them.
"""

from __future__ import annotations

import os
from typing import Any

from console.web import STOP_TIMEOUT_S, Drain, Listen, access_log_wanted, redacting

APP_VARIABLE = "TANGLAW_WEB_APPLICATION"  # the parent tells the worker what to import


class GranianDrain(Drain):
    """granian stops delivering a WebSocket's frames once it begins to shut down, and a
    close sent then never completes. So, once stopping, a socket's sends are dropped
    here instead of left hanging, and a consumer gets through its goodbye (the error
    frame, the close) to the disconnect that saves its partial reply. The browser hears
    nothing more: its socket drops (1006) when the worker exits."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "websocket":
            return await super().__call__(scope, receive, send)

        async def guarded(message) -> None:
            if not self.stopping:
                await send(message)

        await super().__call__(scope, receive, guarded)


def application() -> Drain:
    from django.utils.module_loading import import_string

    target = os.environ.get(APP_VARIABLE, "console.asgi:application")
    return GranianDrain(import_string(target.replace(":", ".")))


def log_config() -> dict[str, Any]:
    from granian.log import LOGGING_CONFIG

    return redacting(LOGGING_CONFIG)


def serve(application_path: str, listen: Listen) -> int:
    from granian import Granian
    from granian.constants import Interfaces

    if listen.fd is not None:
        raise ValueError("granian binds its own socket: give it a host and port")
    os.environ[APP_VARIABLE] = application_path
    Granian(
        "console.web.granian:application", factory=True, address=listen.host,
        port=listen.port, interface=Interfaces.ASGI, workers=1, websockets=True,
        log_dictconfig=log_config(), log_access=access_log_wanted(),
        # past the applications' own wait: a worker stuck beyond it is killed
        workers_kill_timeout=STOP_TIMEOUT_S + 5,
    ).serve()
    return 0
