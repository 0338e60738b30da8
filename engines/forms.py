"""The managed-engine form: the one validation the UI, the API and the site config use."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django import forms

from console.models import Backend, DeploymentPlan
from engines import commands
from engines.choices import EngineKind
from engines.models import ManagedEngine

HF_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ArgsField(forms.CharField):
    """Extra flags: a JSON list in the API, one line of shell words in the form."""

    def to_python(self, value: Any) -> list[str]:  # type: ignore[override]
        if isinstance(value, list):
            return value
        text = (value or "").strip()
        if not text:
            return []
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise forms.ValidationError("a JSON list of strings") from exc
            if not isinstance(parsed, list):
                raise forms.ValidationError("a JSON list of strings")
            return parsed
        try:
            return shlex.split(text)
        except ValueError as exc:
            raise forms.ValidationError(f"cannot split it into words: {exc}") from exc

    def prepare_value(self, value: Any) -> str:
        return shlex.join(value) if isinstance(value, list) else (value or "")


class EnvField(forms.CharField):
    """Environment variables: a JSON object in the API, NAME=value lines in the form."""

    def to_python(self, value: Any) -> dict[str, str]:  # type: ignore[override]
        if isinstance(value, dict):
            return value
        result: dict[str, str] = {}
        for number, line in enumerate((value or "").splitlines(), 1):
            if not line.strip():
                continue
            name, sep, rest = line.strip().partition("=")
            if not sep:
                raise forms.ValidationError(f"line {number}: NAME=value")
            result[name.strip()] = rest.strip()
        return result

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, dict):
            return "\n".join(f"{k}={v}" for k, v in value.items())
        return value or ""


class EngineForm(forms.ModelForm):
    command = forms.CharField(
        required=False, max_length=500, label="Binary",
        help_text="One of the commands this machine allows (TANGLAW_ENGINE_COMMANDS); "
                  "blank: the first one for the kind.")
    extra_args = ArgsField(
        required=False, label="Extra flags", widget=forms.TextInput,
        help_text="e.g. --parallel 2 --jinja (llama-server) or --dtype float32 "
                  "--enforce-eager (vLLM); only allowed flags.")
    env = EnvField(required=False, label="Environment", widget=forms.Textarea(
        attrs={"rows": 2}), help_text="NAME=value per line, e.g. VLLM_CPU_KVCACHE_SPACE=4; "
                                      "the console's own environment is never passed on.")
    port = forms.IntegerField(min_value=1024, max_value=65535)
    context = forms.IntegerField(min_value=64, max_value=1_048_576, required=False,
                                 label="Context (tokens)")
    threads = forms.IntegerField(min_value=1, max_value=1024, required=False,
                                 help_text="llama-server only; blank: all cores")
    ready_timeout_s = forms.IntegerField(min_value=10, max_value=3600, initial=300,
                                         label="Ready within (s)")
    host = forms.ChoiceField(choices=[(h, h) for h in commands.HOSTS], initial="127.0.0.1",
                             help_text="127.0.0.1: this machine only; 0.0.0.0: every "
                                       "interface (other machines can reach it)")

    class Meta:
        model = ManagedEngine
        fields = ["name", "kind", "command", "model_path", "host", "port", "context",
                  "threads", "extra_args", "env", "auto_restart", "ready_timeout_s", "plan"]
        labels = {"model_path": "Model", "auto_restart": "Restart it when it exits"}
        help_texts = {
            "name": "Also the name of the backend it registers, e.g. “local-qwen”.",
            "model_path": "A .gguf file for llama-server; a model directory or a Hugging "
                          "Face id for vLLM.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        plan = self.fields["plan"]
        assert isinstance(plan, forms.ModelChoiceField)
        plan.queryset = DeploymentPlan.objects.all()
        self.fields["plan"].required = False

    def clean_name(self) -> str:
        name = (self.cleaned_data.get("name") or "").strip()
        if not name:
            raise forms.ValidationError("Enter a name.")
        if Backend.objects.filter(name=name).exclude(pk=self.instance.backend_id or 0).exists():
            raise forms.ValidationError(f"A backend named {name!r} exists already; the "
                                        f"engine registers its own: choose another name.")
        return name

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        kind = data.get("kind")
        if not kind:
            return data
        self._clean_command(kind, data)
        self._clean_model(kind, data)
        if data.get("threads") and kind != EngineKind.LLAMACPP:
            self.add_error("threads", "Only llama-server takes a thread count; for vLLM set "
                                      "OMP_NUM_THREADS in the environment.")
        if "extra_args" in data:
            for message in commands.check_args(kind, data["extra_args"]):
                self.add_error("extra_args", message)
        if "env" in data:
            for message in commands.check_env(data["env"]):
                self.add_error("env", message)
        self._clean_port(data)
        return data

    def _clean_command(self, kind: str, data: dict[str, Any]) -> None:
        text = (data.get("command") or "").strip()
        allowed = [c for c in commands.allowed() if c.kind == kind]
        if not text:
            if not allowed:
                self.add_error("command", f"No {EngineKind(kind).label} command is allowed on "
                                          f"this machine: install it, or name it in "
                                          f"TANGLAW_ENGINE_COMMANDS.")
                return
            data["command"] = allowed[0].text
            return
        command = commands.command_for(text)
        if command is None:
            names = "; ".join(c.text for c in allowed) or "none"
            self.add_error("command", f"Not an allowed command (TANGLAW_ENGINE_COMMANDS). "
                                      f"Allowed for {EngineKind(kind).label}: {names}.")
        elif command.kind != kind:
            self.add_error("command", f"This command starts {EngineKind(command.kind).label}, "
                                      f"not {EngineKind(kind).label}.")
        else:
            data["command"] = command.text

    def _clean_model(self, kind: str, data: dict[str, Any]) -> None:
        model = (data.get("model_path") or "").strip()
        data["model_path"] = model
        if not model:
            return
        path = Path(model)
        if kind == EngineKind.LLAMACPP:
            if not path.is_absolute():
                self.add_error("model_path", "Give the .gguf file's absolute path.")
            elif not path.is_file():
                self.add_error("model_path", "No such file on this machine.")
        elif path.is_absolute():
            if not path.is_dir():
                self.add_error("model_path", "No such model directory on this machine.")
        elif not HF_ID.match(model):
            self.add_error("model_path", "Give a model directory's absolute path or a Hugging "
                                         "Face id such as Qwen/Qwen2.5-0.5B-Instruct.")

    def _clean_port(self, data: dict[str, Any]) -> None:
        port, host = data.get("port"), data.get("host")
        if port is None or host is None:
            return
        taken = ManagedEngine.objects.filter(port=port).exclude(pk=self.instance.pk or 0)
        if taken.filter(host__in=commands.HOSTS if host in commands.EVERY_INTERFACE
                        else [host, *commands.EVERY_INTERFACE]).exists():
            self.add_error("port", f"Another managed engine uses port {port}.")
            return
        here = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
        for backend in Backend.objects.exclude(pk=self.instance.backend_id or 0).only(
                "name", "base_url"):
            if urlsplit(backend.base_url).netloc.lower() in here:
                self.add_error("port", f"The backend {backend.name!r} is on port {port} "
                                       f"of this machine.")
                return
