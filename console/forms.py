"""Forms: the one validation path for the pages and the JSON API."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.contrib.auth.forms import AuthenticationForm

from console import urlsafety
from console.backends import normalise_base_url
from console.choices import Role
from console.models import Backend


class BackendForm(forms.ModelForm):
    api_key = forms.CharField(
        required=False, label="API key", strip=True, max_length=1000,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Write-only. Leave blank to keep the current key.",
    )
    clear_api_key = forms.BooleanField(required=False, label="Remove the stored API key")
    keep_api_key = forms.BooleanField(
        required=False, label="Keep the stored API key if the address changes (admins only)",
        help_text="Changing the scheme, host or port clears the stored key unless you enter "
                  "it again, so it is never sent to a host it was not given for.")
    connect_timeout_s = forms.FloatField(min_value=0.1, max_value=60, initial=3.0,
                                         label="Connect timeout (s)")
    read_timeout_s = forms.FloatField(min_value=1, max_value=3600, initial=60.0,
                                      label="Read timeout (s)")
    base_url = forms.CharField(max_length=500, label="Base URL")
    active_probe_interval_s = forms.IntegerField(
        min_value=0, max_value=86400, initial=0, required=False,
        label="Active probe every (s)",
        help_text="0 = off. The monitor sends a short completion (8 tokens) at this "
                  "interval to measure time to first token and tokens/s when there is no "
                  "traffic (costs those tokens on paid backends).")

    class Meta:
        model = Backend
        fields = ["name", "kind", "base_url", "api_key", "enabled", "connect_timeout_s",
                  "read_timeout_s", "active_probe_interval_s", "active_probe_model", "notes"]
        widgets = {"notes": forms.Textarea(attrs={"rows": 3})}
        help_texts = {"name": "A short name operators will recognise, e.g. “jetson-ollama”."}

    refused_url_reason: str = ""

    # the address each kind answers on by default: the form fills it in when the kind
    # changes (static/js/backend_form.js), unless someone typed their own
    DEFAULT_URLS = {"ollama": "http://127.0.0.1:11434", "llamacpp": "http://127.0.0.1:8080",
                    "vllm": "http://127.0.0.1:8000", "foundry_local": "http://127.0.0.1:5273",
                    "openai_compatible": "http://127.0.0.1:1234/v1"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk and self.instance.api_key_set:
            self.fields["api_key"].help_text = ("Write-only. Leave blank to keep the current "
                                                "key.")
        else:
            self.fields["api_key"].help_text = ("Write-only: stored encrypted and never shown "
                                                "again. Leave blank if the engine needs none "
                                                "(local engines usually do not).")
        self.fields["kind"].widget.attrs["data-default-urls"] = json.dumps(self.DEFAULT_URLS)

    def clean_active_probe_interval_s(self):
        value = self.cleaned_data.get("active_probe_interval_s") or 0
        if 0 < value < 60:
            raise forms.ValidationError("Use 0 (off) or at least 60 seconds.")
        return value

    def clean_name(self):
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Enter a name.")
        return name

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        kind, url = data.get("kind"), self.data.get("base_url", "")
        if kind and "base_url" not in self.errors:
            try:
                parts = urlsafety.parse_backend_url(url)
                url = parts.url.rstrip("/")
                urlsafety.check_resolved(parts.host, parts.port)
            except urlsafety.UnsafeURL as exc:
                self.refused_url_reason = str(exc)
                self.add_error("base_url", str(exc))
            else:
                data["base_url"] = normalise_base_url(kind, url)
        return data


class LocalLoginForm(AuthenticationForm):
    """The sign-in form. With single sign-on on, local passwords are for admins (a
    break-glass way in) unless TANGLAW_OIDC_LOCAL_LOGIN=all."""

    def confirm_login_allowed(self, user):
        super().confirm_login_allowed(user)
        from django.conf import settings

        from console import sso

        if sso.enabled() and settings.TANGLAW_OIDC_LOCAL_LOGIN == "admins" and \
                user.effective_role != "admin":
            raise forms.ValidationError(
                f"Sign in with {settings.TANGLAW_OIDC_NAME}: while single sign-on is on, "
                f"local passwords are for admins only.", code="sso_only")


class UserCreateForm(forms.Form):
    username = forms.RegexField(regex=r"^[\w.@+-]{1,150}$", max_length=150,
                                error_messages={"invalid": "Use letters, digits and @.+-_ only."})
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)
    email = forms.EmailField(required=False)

    def clean_username(self):
        username = self.cleaned_data["username"]
        if get_user_model().objects.filter(username__iexact=username).exists():
            raise forms.ValidationError("A user with that name already exists.")
        return username


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. “ci-deploy”.")
