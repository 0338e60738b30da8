"""A threaded HTTP server on 127.0.0.1 for the fakes, started and stopped the same way."""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def reset(req: BaseHTTPRequestHandler) -> None:
    """Drop the connection with a TCP RST (linger 0), as a crashed peer or proxy would."""
    req.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    req.connection.close()
    req.close_connection = True


class LoopbackServer:
    """Base for fakes: subclasses set up their handler class and call `serve()`."""

    _server: socketserver.TCPServer | None = None
    bind_port = 0  # set to come back on the same port after stop()

    def serve(self, handler: type[socketserver.BaseRequestHandler],
              server_class: type[socketserver.TCPServer] = ThreadingHTTPServer) -> None:
        """Serve `handler` on 127.0.0.1 (HTTP by default; any threading TCP server)."""
        self._server = server_class(("127.0.0.1", self.bind_port), handler)
        self._server.daemon_threads = True
        # a short poll interval keeps stop() fast (the default 0.5 s adds up over a suite)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]
