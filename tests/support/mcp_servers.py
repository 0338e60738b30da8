"""Real MCP servers for the tests, built with the `mcp` package's server API.

`McpHttpServer` serves streamable HTTP with uvicorn in a thread and records each
request's headers; running this file starts the same tools over stdio.
"""

from __future__ import annotations

import socket
import threading
import time

LONG_NAME = "summarise_the_quarterly_maintenance_report_for_every_pump_station_in_region"


def build():
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    server = MCPServer("plant")

    @server.tool(name="add.numbers", description="Add two whole numbers")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(name="pump_status", description="The status of a pump by its id")
    def pump_status(pump_id: str) -> dict:
        return {"pump_id": pump_id, "running": True, "flow_lpm": 42.5}

    @server.tool(name=LONG_NAME, description="A tool with a name longer than 64 characters")
    def long_one() -> str:
        return "done"

    @server.tool(name="fail", description="Always fails")
    def fail() -> str:
        raise ToolError("the valve controller is offline")  # reported to the client as is

    return server


class McpHttpServer:
    def __init__(self) -> None:
        self.headers: list[dict[str, str]] = []

    def start(self) -> McpHttpServer:
        import uvicorn

        app = build().streamable_http_app()
        seen = self.headers

        async def recording(scope, receive, send):
            if scope["type"] == "http":
                seen.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
            await app(scope, receive, send)

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(recording, host="127.0.0.1", port=self.port,
                                                     log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the MCP test server did not start")
            time.sleep(0.02)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=5)


if __name__ == "__main__":
    build().run("stdio")
