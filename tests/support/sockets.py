"""A WebSocket test client that waits for the server as long as a loaded machine needs.

Channels' WebsocketCommunicator gives the handshake one second by default; on a busy CI
machine (a bench or a browser test beside it) the consumer's first database hop alone
can take longer, and the test failed without anything being wrong.
"""

from __future__ import annotations

from channels.testing import WebsocketCommunicator as _Communicator

HANDSHAKE_S = 15


class WebsocketCommunicator(_Communicator):
    async def connect(self, timeout: float = HANDSHAKE_S):
        return await super().connect(timeout=timeout)
