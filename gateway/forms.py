"""The gateway pages' forms: they turn what a browser posts (a date, a textarea of
patterns, rows of targets) into the data gateway.actions checks; the action's errors
are shown on the same fields."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from django import forms
from django.utils import timezone

from console.actions import Invalid
from console.models import ApiToken, Backend, User
from console.safeinput import digits
from gateway.actions import LIMITS, MAX_TARGETS

LIMIT_LABELS = {"rpm": "Requests per minute", "tokens_per_day": "Tokens per day",
                "tokens_per_month": "Tokens per month", "max_streams": "Requests at once"}


class KeyForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the key is for, e.g. “nightly-eval”.")
    owner = forms.ModelChoiceField(queryset=User.objects.none(), required=False,
                                   empty_label=None)
    valid_until = forms.DateField(
        required=False, widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The key stops working when this day ends. Empty: never expires.")
    scopes = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple,
        choices=[(k, f"{k} — {v}") for k, v in ApiToken.SCOPES.items()],
        help_text="None ticked: everything the owner's role allows.")
    allowed_models = forms.CharField(
        required=False, label="Models and agents", max_length=12_000,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "agent/*\nllama/qwen*\ndefault"}),
        help_text="One pattern a line (* matches anything). Empty: every model and agent.")
    rpm = forms.IntegerField(required=False, min_value=1, max_value=LIMITS["rpm"])
    tokens_per_day = forms.IntegerField(required=False, min_value=1,
                                        max_value=LIMITS["tokens_per_day"])
    tokens_per_month = forms.IntegerField(required=False, min_value=1,
                                          max_value=LIMITS["tokens_per_month"])
    max_streams = forms.IntegerField(required=False, min_value=1,
                                     max_value=LIMITS["max_streams"])
    log_content = forms.BooleanField(
        required=False, label="Keep prompts and replies in traces",
        help_text="Spans this key sends keep their content (when the sender put it there, "
                  "e.g. MAF's enable_sensitive_data). Off: only timings, models and tokens.")

    def __init__(self, *args, owners=None, token: ApiToken | None = None, **kwargs):
        if token is not None:
            kwargs.setdefault("initial", initial_for(token))
        super().__init__(*args, **kwargs)
        self.editing = token is not None
        for field, label in LIMIT_LABELS.items():
            self.fields[field].label = label
            self.fields[field].widget.attrs["placeholder"] = "no limit"
        if owners is None or token is not None:
            del self.fields["owner"]  # a key keeps its owner; non-admins own their keys
        else:
            owner = self.fields["owner"]
            assert isinstance(owner, forms.ModelChoiceField)
            owner.queryset = owners

    def data_for_action(self) -> dict[str, Any]:
        """The cleaned fields as gateway.actions takes them; on an edit, only the fields
        that changed (an expiry set to the second through the API survives a save that
        did not touch the date)."""
        c = self.cleaned_data
        data: dict[str, Any] = {
            "name": c["name"], "scopes": list(c["scopes"]),
            "allowed_models": [p for line in c["allowed_models"].splitlines()
                               for p in line.split(",") if p.strip()],
            "expires_at": end_of(c["valid_until"]), "log_content": c["log_content"],
            **{f: c[f] for f in LIMIT_LABELS}}
        if "owner" in self.fields and c.get("owner") is not None:
            data["owner"] = c["owner"]
        if self.editing:
            changed = set(self.changed_data)
            rename = {"valid_until": "expires_at"}
            data = {k: v for k, v in data.items()
                    if k in {rename.get(f, f) for f in changed}}
        return data

    def show(self, exc: Invalid) -> None:
        rename = {"expires_at": "valid_until"}
        for field, messages in exc.errors.items():
            name = rename.get(field, field)
            self.add_error(name if name in self.fields else None, " ".join(messages))


def end_of(day) -> datetime | None:
    """The first moment after `day` ends, in the site's time zone."""
    if day is None:
        return None
    return timezone.make_aware(datetime.combine(day + timedelta(days=1), time.min))


def initial_for(token: ApiToken) -> dict[str, Any]:
    valid_until = None
    if token.expires_at is not None:
        valid_until = (timezone.localtime(token.expires_at) - timedelta(microseconds=1)).date()
    return {"name": token.name, "valid_until": valid_until, "scopes": list(token.scopes),
            "allowed_models": "\n".join(token.allowed_models),
            "log_content": token.log_content, **{f: getattr(token, f) for f in LIMIT_LABELS}}


class AliasForm(forms.Form):
    name = forms.CharField(max_length=64, help_text="What clients send as the model, e.g. "
                                                    "“default”, “small”, “escalation”.")
    description = forms.CharField(max_length=200, required=False)


def target_rows(post) -> list[dict[str, Any]]:
    """The posted target rows (backend_N, model_N), in order; empty rows skipped and a
    backend that is not a number kept as-is, so the action names the row."""
    out = []
    for n in range(MAX_TARGETS):
        backend, model = post.get(f"backend_{n}", ""), post.get(f"model_{n}", "").strip()
        if not backend and not model:
            continue
        out.append({"backend_id": int(backend) if digits(backend) and len(backend) < 19
                    else backend, "model": model})
    return out


def backend_choices() -> list[tuple[int, str]]:
    return [(b.pk, b.name if b.enabled else f"{b.name} (disabled)")
            for b in Backend.objects.order_by("-enabled", "name").only("name", "enabled")]
