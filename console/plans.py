"""vLLM deployment plans: a model, a scenario and the GPUs → `vllm serve` and `docker run`,
with a check that the plan fits the GPUs' memory and tool-calling flags where needed.

Scenarios are Tanglaw's templates, from a quick development server to an
enterprise replica; each sets GPU memory utilisation, the context length,
parallelism, prefix caching, chunked prefill, concurrency and batch size.
The fit check: the weights (split across tensor-parallel GPUs) plus the KV
cache of one full-length sequence plus ~1.5 GiB of activations and CUDA
context must fit in `gpu_memory_utilization` of each GPU's memory.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from typing import Any

GIB = 1024 ** 3
ACTIVATIONS_BYTES = 1.5 * GIB
SCENARIOS: dict[str, dict[str, Any]] = {
    "development": {"gpu_memory_utilization": 0.80, "max_model_len": 4096,
                    "max_num_seqs": 16, "enable_prefix_caching": False,
                    "enable_chunked_prefill": False, "enforce_eager": True,
                    "parallel": "one", "max_num_batched_tokens": None, "speculative": False},
    "staging": {"gpu_memory_utilization": 0.85, "max_model_len": 8192, "max_num_seqs": 64,
                "enable_prefix_caching": True, "enable_chunked_prefill": True,
                "enforce_eager": False, "parallel": "one", "max_num_batched_tokens": 8192,
                "speculative": False},
    "production_low": {"gpu_memory_utilization": 0.90, "max_model_len": 8192,
                       "max_num_seqs": 128, "enable_prefix_caching": True,
                       "enable_chunked_prefill": True, "enforce_eager": False,
                       "parallel": "one", "max_num_batched_tokens": 8192, "speculative": False},
    "production_high": {"gpu_memory_utilization": 0.92, "max_model_len": 16384,
                        "max_num_seqs": 256, "enable_prefix_caching": True,
                        "enable_chunked_prefill": True, "enforce_eager": False,
                        "parallel": "all", "max_num_batched_tokens": 16384,
                        "speculative": False},
    "enterprise": {"gpu_memory_utilization": 0.95, "max_model_len": 32768,
                   "max_num_seqs": 512, "enable_prefix_caching": True,
                   "enable_chunked_prefill": True, "enforce_eager": False, "parallel": "all",
                   "max_num_batched_tokens": 32768, "speculative": True},
}
# known models: parameters, layers, KV heads, head size, the tool-call parser vLLM needs
MODELS: dict[str, dict[str, Any]] = {
    "Qwen/Qwen2.5-0.5B-Instruct": {"params": 0.49e9, "layers": 24, "kv_heads": 2,
                                   "head_dim": 64, "parser": "hermes"},
    "Qwen/Qwen2.5-1.5B-Instruct": {"params": 1.54e9, "layers": 28, "kv_heads": 2,
                                   "head_dim": 128, "parser": "hermes"},
    "Qwen/Qwen2.5-3B-Instruct": {"params": 3.09e9, "layers": 36, "kv_heads": 2,
                                 "head_dim": 128, "parser": "hermes"},
    "Qwen/Qwen2.5-7B-Instruct": {"params": 7.62e9, "layers": 28, "kv_heads": 4,
                                 "head_dim": 128, "parser": "hermes"},
    "Qwen/Qwen2.5-Coder-7B-Instruct": {"params": 7.62e9, "layers": 28, "kv_heads": 4,
                                       "head_dim": 128, "parser": "hermes"},
    "meta-llama/Llama-3.2-1B-Instruct": {"params": 1.24e9, "layers": 16, "kv_heads": 8,
                                         "head_dim": 64, "parser": "llama3_json"},
    "meta-llama/Llama-3.2-3B-Instruct": {"params": 3.21e9, "layers": 28, "kv_heads": 8,
                                         "head_dim": 128, "parser": "llama3_json"},
    "meta-llama/Llama-3.1-8B-Instruct": {"params": 8.03e9, "layers": 32, "kv_heads": 8,
                                         "head_dim": 128, "parser": "llama3_json"},
    "microsoft/Phi-3.5-mini-instruct": {"params": 3.82e9, "layers": 32, "kv_heads": 32,
                                        "head_dim": 96, "parser": None},
    "microsoft/Phi-4-mini-instruct": {"params": 3.84e9, "layers": 32, "kv_heads": 8,
                                      "head_dim": 128, "parser": "phi4_mini_json"},
}
BYTES_PER_WEIGHT = {"": 2.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "awq": 0.5, "gptq": 0.5}
SPECULATIVE = '{"method": "ngram", "num_speculative_tokens": 5, "prompt_lookup_max": 4}'


class PlanError(ValueError):
    """The request cannot be planned; the message says which field and why."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


@dataclass
class Plan:
    command: str
    docker_command: str
    fits: bool
    estimate_bytes: float
    per_gpu_bytes: float
    budget_bytes: float
    tensor_parallel_size: int
    warnings: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"command": self.command, "docker_command": self.docker_command,
                "fits": self.fits, "estimate_bytes": round(self.estimate_bytes),
                "per_gpu_bytes": round(self.per_gpu_bytes),
                "budget_bytes": round(self.budget_bytes),
                "tensor_parallel_size": self.tensor_parallel_size, "warnings": self.warnings}


def _params_from_name(model: str) -> float | None:
    match = re.search(r"(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", model)
    return float(match.group(1)) * 1e9 if match else None


def _tp_size(count: int, heads: int | None) -> int:
    """The largest power of two ≤ the GPU count (vLLM needs heads divisible by it)."""
    size = 1
    while size * 2 <= count and (heads is None or heads % (size * 2) == 0):
        size *= 2
    return size


def plan(model: str, scenario: str, gpus: list[dict[str, Any]], *,
         quantization: str = "") -> Plan:
    model = (model or "").strip()
    if not model or any(c.isspace() for c in model) or len(model) > 200:
        raise PlanError("model", "Enter a Hugging Face model id, e.g. Qwen/Qwen2.5-7B-Instruct.")
    if scenario not in SCENARIOS:
        raise PlanError("scenario", f"One of {', '.join(SCENARIOS)}.")
    if quantization not in BYTES_PER_WEIGHT:
        choices = ", ".join(q for q in BYTES_PER_WEIGHT if q)
        raise PlanError("quantization", f"One of: none, {choices}.")
    if not gpus:
        raise PlanError("gpus", "No GPU detected or given: vLLM needs at least one GPU. Give "
                                "gpus as [{name, memory_bytes}].")
    for i, gpu in enumerate(gpus):
        memory = gpu.get("memory_bytes")
        if isinstance(memory, bool) or not isinstance(memory, int | float) or memory < GIB:
            raise PlanError(f"gpus[{i}].memory_bytes", "Give each GPU's memory in bytes.")
    template = SCENARIOS[scenario]
    known = MODELS.get(model, {})
    warnings: list[str] = []
    params = known.get("params") or _params_from_name(model)
    if params is None:
        raise PlanError("model", f"Tanglaw does not know {model}'s size; use a name with it "
                                 f"(e.g. …-7B-…) or one of: {', '.join(MODELS)}.")
    if not known:
        warnings.append(f"{model} is not in Tanglaw's table: its size comes from its name and "
                        f"the KV cache is estimated like a 7B Llama.")
    layers = known.get("layers") or 32
    kv_heads, head_dim = known.get("kv_heads") or 8, known.get("head_dim") or 128
    tp = _tp_size(len(gpus), kv_heads if known else None) if template["parallel"] == "all" \
        else 1
    smallest = min(float(g["memory_bytes"]) for g in gpus[:tp])
    weights = params * BYTES_PER_WEIGHT[quantization]
    context = template["max_model_len"]
    kv = 2 * layers * kv_heads * head_dim * context * 2.0  # one full-length sequence, fp16
    per_gpu = weights / tp + kv / tp + ACTIVATIONS_BYTES
    budget = smallest * template["gpu_memory_utilization"]
    fits = per_gpu <= budget
    if not fits:
        warnings.append(f"does not fit: each GPU needs about {per_gpu / GIB:.1f} GiB (weights "
                        f"{weights / tp / GIB:.1f} + KV cache {kv / tp / GIB:.1f} + "
                        f"{ACTIVATIONS_BYTES / GIB:.1f} activations) but "
                        f"{template['gpu_memory_utilization']:.0%} of {smallest / GIB:.1f} GiB "
                        f"is {budget / GIB:.1f} GiB. Try a smaller model, a quantization "
                        f"(awq, fp8), a shorter context or more GPUs.")
    flags: list[str] = ["vllm", "serve", model,
                        "--gpu-memory-utilization", f"{template['gpu_memory_utilization']:.2f}",
                        "--max-model-len", str(context),
                        "--max-num-seqs", str(template["max_num_seqs"])]
    if tp > 1:
        flags += ["--tensor-parallel-size", str(tp)]
    if len(gpus) > tp and template["parallel"] == "all":
        warnings.append(f"{len(gpus) - tp} GPU(s) left out: the tensor-parallel size must "
                        f"divide the model's {kv_heads} KV heads; run another replica on them.")
    if quantization:
        flags += ["--quantization", quantization]
    if template["max_num_batched_tokens"]:
        flags += ["--max-num-batched-tokens", str(template["max_num_batched_tokens"])]
    flags.append("--enable-prefix-caching" if template["enable_prefix_caching"]
                 else "--no-enable-prefix-caching")
    if template["enable_chunked_prefill"]:
        flags.append("--enable-chunked-prefill")
    if template["enforce_eager"]:
        flags.append("--enforce-eager")
    if template["speculative"]:
        flags += ["--speculative-config", SPECULATIVE]
    parser = known.get("parser")
    if parser:
        flags += ["--enable-auto-tool-choice", "--tool-call-parser", parser]
    elif known:
        warnings.append(f"{model} has no tool-call parser in vLLM: agents on it cannot call "
                        f"tools.")
    else:
        warnings.append("unknown model: add --enable-auto-tool-choice --tool-call-parser "
                        "<parser> if agents on it call tools (hermes for Qwen, llama3_json for "
                        "Llama 3).")
    command = shlex.join(flags)
    docker = ("docker run --gpus all --ipc=host -p 8000:8000 "
              "-v \"$HOME/.cache/huggingface:/root/.cache/huggingface\" "
              f"vllm/vllm-openai:latest --model {shlex.quote(model)} {shlex.join(flags[3:])}")
    return Plan(command, docker, fits, weights + kv + ACTIVATIONS_BYTES * tp, per_gpu, budget,
                tp, warnings)


def detected_gpus() -> list[dict[str, Any]]:
    """The GPUs the monitor found on this host (empty without the monitoring app or GPUs)."""
    try:
        from monitoring.queries import gpu_state
    except ImportError:
        return []
    return [{"name": d.get("name", "GPU"), "memory_bytes": d.get("memory_total_bytes", 0)}
            for d in gpu_state().get("devices", [])]
