"""A fake inference engine over real HTTP, for engines that cannot run here and for faults.

It answers the way each engine's documentation says it does (Ollama's native
API, vLLM's /health /version /metrics, llama-server's /health 503 while
loading, Foundry Local's new and legacy paths) and can be switched into a
fault: "401", "html502", "html200", "stall", "malformed", "reset".
It records every request so tests can assert what a backend saw.
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler

from tests.support.loopback import LoopbackServer, reset

OLLAMA_TAGS = {"models": [
    {"name": "qwen2.5:0.5b", "model": "qwen2.5:0.5b", "modified_at": "2026-10-01T10:00:00Z",
     "size": 397821319, "digest": "a8b0c5157701",
     "details": {"format": "gguf", "family": "qwen2", "families": ["qwen2"],
                 "parameter_size": "494.03M", "quantization_level": "Q4_K_M"}},
    {"name": "llama3.2:3b", "model": "llama3.2:3b", "modified_at": "2026-10-02T10:00:00Z",
     "size": 2019393189, "digest": "a80c4f17acd5",
     "details": {"format": "gguf", "family": "llama", "families": ["llama"],
                 "parameter_size": "3.2B", "quantization_level": "Q4_K_M"}},
]}
OLLAMA_PS = {"models": [
    {"name": "qwen2.5:0.5b", "model": "qwen2.5:0.5b", "size": 995000000, "digest": "a8b0c5157701",
     "details": {"format": "gguf", "family": "qwen2", "parameter_size": "494.03M",
                 "quantization_level": "Q4_K_M"},
     "expires_at": "2026-11-24T14:38:31.837530123-07:00", "size_vram": 995000000},
]}
# as vLLM 0.32 (CPU build) exports them (tests/engines/test_vllm_cpu.py reads the real
# one): every sample carries an `engine` label, counters have `_created` samples, and
# newer families sit beside the ones Tanglaw reads
VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 7.0
# HELP vllm:num_requests_waiting_by_reason Number of waiting requests by reason. Reason \
labels: 'capacity' = waiting for scheduling capacity; 'deferred' = deferred by transient \
constraints (LoRA budget, KV transfer, blocked status). Sum of all reasons equals \
vllm:num_requests_waiting.
# TYPE vllm:num_requests_waiting_by_reason gauge
vllm:num_requests_waiting_by_reason{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct",reason="capacity"} 7.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct",reason="deferred"} 0.0
# HELP vllm:engine_sleep_state Engine sleep state; awake = 0 means engine is sleeping; \
awake = 1 means engine is awake; weights_offloaded = 1 means sleep level 1; \
discard_all = 1 means sleep level 2.
# TYPE vllm:engine_sleep_state gauge
vllm:engine_sleep_state{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct",sleep_state="awake"} 1.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 0.42
# HELP vllm:num_preemptions_total Cumulative number of preemption from the engine.
# TYPE vllm:num_preemptions_total counter
vllm:num_preemptions_total{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 2.0
vllm:num_preemptions_created{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 1.7962157e+09
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 1221.0
vllm:prompt_tokens_created{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 1.7962157e+09
# HELP vllm:generation_tokens_total Number of generation tokens processed.
# TYPE vllm:generation_tokens_total counter
vllm:generation_tokens_total{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 192.0
vllm:generation_tokens_created{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 1.7962157e+09
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.1",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 5.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 9.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 9.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 1.25
vllm:time_to_first_token_seconds_created{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 1.7962157e+09
# HELP vllm:inter_token_latency_seconds Histogram of inter-token latency in seconds.
# TYPE vllm:inter_token_latency_seconds histogram
vllm:inter_token_latency_seconds_bucket{engine="0",le="0.01",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 150.0
vllm:inter_token_latency_seconds_bucket{engine="0",le="+Inf",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 188.0
vllm:inter_token_latency_seconds_count{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 188.0
vllm:inter_token_latency_seconds_sum{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 1.88
# HELP vllm:e2e_request_latency_seconds Histogram of e2e request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{engine="0",le="+Inf",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 4.0
vllm:e2e_request_latency_seconds_count{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 4.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 1.855
# HELP vllm:request_queue_time_seconds Histogram of time spent in WAITING phase for request.
# TYPE vllm:request_queue_time_seconds histogram
vllm:request_queue_time_seconds_bucket{engine="0",le="+Inf",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 4.0
vllm:request_queue_time_seconds_count{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 4.0
vllm:request_queue_time_seconds_sum{engine="0",model_name="Qwen/Qwen2.5-1.5B-Instruct"} 0.0136
"""
LLAMACPP_METRICS = """\
# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 120
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
# HELP llamacpp:requests_deferred Number of requests deferred.
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 4
"""
HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


class FakeEngine(LoopbackServer):
    def __init__(self, kind: str, *, api_key: str | None = None, fault: str | None = None,
                 loading_polls: int = 0, foundry_legacy: bool = False, router: bool = False,
                 stall_s: float = 3.0, models: list[str] | None = None,
                 pull_error_at: int | None = None, pull_gap_s: float = 0.0):
        self.kind = kind
        self.api_key = api_key
        self.fault = fault
        self.loading_polls = loading_polls
        self.foundry_legacy = foundry_legacy
        self.router = router
        self.stall_s = stall_s
        self.models = models or (["Qwen/Qwen2.5-1.5B-Instruct"] if kind == "vllm" else
                                 ["tiny"] if kind == "llamacpp" else
                                 ["phi-4-mini-instruct-generic-cpu"] if kind == "foundry_local"
                                 else ["qwen2.5-7b-instruct"])
        self.requests: list[dict] = []
        # Ollama pulls: fail with an {"error"} line after N lines; a pause between lines
        self.pull_error_at = pull_error_at
        self.pull_gap_s = pull_gap_s
        self.pull_disconnects = 0
        self.pulled: list[str] = []

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> FakeEngine:
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                engine.handle(self, "GET")

            def do_POST(self):
                engine.handle(self, "POST")

            def do_DELETE(self):
                engine.handle(self, "DELETE")

        self.serve(Handler)
        return self

    @property
    def url(self) -> str:
        root = f"http://127.0.0.1:{self.port}"
        return root + "/v1" if self.kind == "openai_compatible" else root

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- responses ---------------------------------------------------------
    def handle(self, req: BaseHTTPRequestHandler, method: str) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        self.requests.append({"method": method, "path": req.path,
                              "headers": dict(req.headers), "body": body,
                              "peer_port": req.client_address[1]})
        fault = self.fault
        if fault == "reset":
            reset(req)
            return
        if fault == "stall":
            time.sleep(self.stall_s)
        if fault == "401":
            return self.send(req, 401, {"error": {"message": "Invalid API key"}})
        if fault == "html502":
            return self.send(req, 502, HTML, "text/html")
        if fault == "html200":
            return self.send(req, 200, HTML.replace(b"502 Bad Gateway", b"Router login"),
                             "text/html")
        if fault == "malformed":
            return self.send(req, 200, b'{"models": [tru', "application/json")
        route = getattr(self, f"route_{self.kind}")
        status, payload, *ctype = route(req, method, req.path.split("?")[0])
        if isinstance(payload, list) and ctype == ["application/x-ndjson"]:
            return self.stream_lines(req, payload)
        self.send(req, status, payload, *(ctype or ["application/json"]))

    def stream_lines(self, req, lines: list[dict]) -> None:
        """NDJSON, one line at a time, as Ollama streams a pull (HTTP 200 even on errors)."""
        req.send_response(200)
        req.send_header("Content-Type", "application/x-ndjson")
        req.send_header("Connection", "close")
        req.end_headers()
        req.close_connection = True
        try:
            for line in lines:
                req.wfile.write(json.dumps(line).encode() + b"\n")
                req.wfile.flush()
                if line.get("status") == "success":
                    self.pulled.append(self._pulling)  # listed once the pull completed
                if self.pull_gap_s:
                    time.sleep(self.pull_gap_s)
        except (BrokenPipeError, ConnectionResetError):
            self.pull_disconnects += 1

    def send(self, req, status, payload, ctype="application/json"):
        data = payload if isinstance(payload, bytes) else (
            payload.encode() if isinstance(payload, str) else json.dumps(payload).encode())
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        req.wfile.write(data)

    def _authorised(self, req) -> bool:
        return not self.api_key or req.headers.get("Authorization") == f"Bearer {self.api_key}"

    def _openai_models(self, owned_by: str):
        return {"object": "list", "data": [
            {"id": m, "object": "model", "created": 1730000000, "owned_by": owned_by,
             "max_model_len": 32768} for m in self.models]}

    def route_ollama(self, req, method, path):
        if path == "/api/version":
            return 200, {"version": "0.12.3"}
        if path == "/api/tags":
            pulled = [{"name": m, "model": m, "modified_at": "2026-11-24T10:00:00Z",
                       "size": 397807936, "digest": "6f96e01a3f55",
                       "details": {"format": "gguf", "family": "llama",
                                   "parameter_size": "1.2B", "quantization_level": "Q8_0"}}
                      for m in self.pulled]
            return 200, {"models": OLLAMA_TAGS["models"] + pulled}
        if path == "/api/ps":
            return 200, OLLAMA_PS
        if path == "/api/generate" and method == "POST":
            body = json.loads(self.requests[-1]["body"] or b"{}")
            if body.get("keep_alive") == 0:  # Ollama's documented way to unload a model
                return 200, {"model": body.get("model"), "created_at": "2026-11-24T00:00:00Z",
                             "response": "", "done": True, "done_reason": "unload"}
            if "prompt" not in body:  # an empty request loads the model
                return 200, {"model": body.get("model"), "created_at": "2026-11-24T00:00:00Z",
                             "response": "", "done": True, "done_reason": "load"}
            return 400, {"error": "the fake does not generate text"}
        if path == "/api/show" and method == "POST":
            model = json.loads(self.requests[-1]["body"] or b"{}").get("model", "")
            tools = model.startswith(("llama3.2", "qwen2.5"))
            return 200, {"details": {"family": "llama"},
                         "capabilities": ["completion", "tools"] if tools else ["completion"]}
        if path == "/api/pull" and method == "POST":
            model = json.loads(self.requests[-1]["body"] or b"{}").get("model", "")
            return 200, self.pull_lines(model), "application/x-ndjson"
        if path == "/api/delete" and method == "DELETE":
            model = json.loads(self.requests[-1]["body"] or b"{}").get("model", "")
            if model not in self.pulled and model != "qwen2.5:0.5b":
                return 404, {"error": f"model '{model}' not found"}
            return 200, b"", "text/plain"
        if path == "/v1/models":
            return 200, self._openai_models("library")
        return 404, b"404 page not found", "text/plain"

    def pull_lines(self, model: str) -> list[dict]:
        """A realistic pull: manifest, three layers growing, verifying, success."""
        layers = [("sha256:6f96e01a3f55", 397807936), ("sha256:66b9ea09bd5b", 68),
                  ("sha256:eb4402837c78", 1482)]
        lines: list[dict] = [{"status": "pulling manifest"}]
        for digest, total in layers:
            for step in (0, 1, 2, 4):
                lines.append({"status": f"pulling {digest[7:19]}", "digest": digest,
                              "total": total, "completed": total * step // 4})
        lines += [{"status": "verifying sha256 digest"}, {"status": "writing manifest"},
                  {"status": "success"}]
        if self.pull_error_at is not None:
            lines = lines[:self.pull_error_at] + [
                {"error": "max retries exceeded: write /root/.ollama/models/blobs: no space "
                          "left on device"}]
        self._pulling = model
        return lines

    def route_vllm(self, req, method, path):
        if path == "/health":
            return 200, b"", "text/plain"
        if path == "/version":
            return 200, {"version": "0.11.0"}
        if path == "/metrics":
            return 200, VLLM_METRICS, "text/plain; version=0.0.4"
        if path.startswith("/v1/"):
            if not self._authorised(req):
                return 401, {"error": "Unauthorized"}
            if path == "/v1/models":
                return 200, self._openai_models("vllm")
        return 404, {"detail": "Not Found"}

    def route_llamacpp(self, req, method, path):
        if path == "/health":
            if self.loading_polls > 0:
                self.loading_polls -= 1
                return 503, {"error": {"code": 503, "message": "Loading model",
                                       "type": "unavailable_error"}}
            return 200, {"status": "ok"}
        if path == "/props":
            return 200, {"default_generation_settings": {"n_ctx": 4096}, "total_slots": 1,
                         "model_path": "/models/tiny.gguf", "build_info": "b6500-fake"}
        if path == "/slots":
            return 200, [{"id": 0, "is_processing": False}]
        if path == "/metrics":
            return 200, LLAMACPP_METRICS, "text/plain; version=0.0.4"
        if path in ("/models/load", "/models/unload") and self.router and method == "POST":
            name = json.loads(self.requests[-1]["body"] or b"{}").get("model")
            return (200, {"success": True}) if name in self.models else (
                404, {"error": {"message": "model not found"}})
        if path == "/models" and self.router:
            return 200, {"data": [
                {"id": m, "status": {"value": "loaded" if i == 0 else "unloaded"}}
                for i, m in enumerate(self.models)]}
        if path == "/v1/models":
            return 200, {"object": "list", "data": [
                {"id": m, "object": "model", "owned_by": "llamacpp",
                 "meta": {"n_params": 1_500_000_000, "size": 1_100_000_000, "n_ctx_train": 32768,
                          "n_vocab": 151936}} for m in self.models]}
        return 404, {"error": {"code": 404, "message": "File Not Found"}}

    def route_foundry_local(self, req, method, path):
        # new: what the real 2.x runtime's web service answered (tests/console/
        # test_foundry_local_runtime.py); legacy: the 0.x CLI service
        new, legacy = not self.foundry_legacy, self.foundry_legacy
        if path == "/status" and new:
            return 200, {"endpoints": [f"http://127.0.0.1:{self.port}"],
                         "modelCachePath": "/home/op/.foundry/cache/models", "pid": 4242}
        if path == "/openai/status" and legacy:
            return 200, {"Endpoints": [f"http://127.0.0.1:{self.port}"],
                         "ModelDirPath": "/home/op/.foundry/cache/models",
                         "PipeName": "inference_agent"}
        if (path == "/models/loaded" and new) or (path == "/openai/loadedmodels" and legacy):
            return 200, [self.models[0]]
        if path == "/v1/models":
            return 200, self._openai_models("Microsoft")
        if path == "/foundry/list" and legacy:  # the 2.x runtime has no catalog route
            return 200, [
                {"name": "Phi-4-mini-instruct-generic-cpu", "alias": "phi-4-mini",
                 "fileSizeMb": 4863, "supportsToolCalling": True, "task": "chat-completion"},
                {"name": "qwen2.5-0.5b-instruct-generic-cpu", "alias": "qwen2.5-0.5b",
                 "fileSizeMb": 822, "supportsToolCalling": False, "task": "chat-completion"}]
        prefix = "/openai/" if legacy else "/models/"
        for action in ("load", "unload"):
            if path.startswith(f"{prefix}{action}/") and method == "GET":
                name = path.rsplit("/", 1)[1]
                if name in self.models:
                    return 200, {"status": "ok"}
                return (404, b"", "text/plain") if legacy else (404, {"error": {
                    "code": None, "message": f"Model not found: No model matching '{name}'",
                    "param": None, "type": "invalid_request_error"}})
        # oatpp, the 2.x runtime's HTTP server, for a route it does not have
        return 404, (f"server=oatpp/1.3.0\ncode=404\ndescription=Not Found\nmessage=No "
                     f"mapping for HTTP-method: '{method}', URL: '{path}'\n").encode(), \
            "text/plain"

    def route_openai_compatible(self, req, method, path):
        if path == "/v1/models":
            if not self._authorised(req):
                return 401, {"error": {"message": "Incorrect API key provided",
                                       "type": "invalid_request_error"}}
            return 200, self._openai_models("organization_owner")
        return 404, {"error": "Unexpected endpoint or method."}
