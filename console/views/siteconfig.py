"""The site configuration page: download the YAML; check or apply one."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from console import siteconfig
from console.actions import Invalid, Refused
from console.audit import Actor
from console.permissions import require


@require("backends.view")
def config_export(request):
    response = HttpResponse(siteconfig.export_yaml(), content_type="application/yaml")
    response["Content-Disposition"] = 'attachment; filename="tanglaw-site.yaml"'
    return response


def _secrets(text: str) -> dict[str, str]:
    pairs = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            pairs[key.strip()] = value.strip()
    return pairs


@require("config.apply")
@require_http_methods(["GET", "POST"])
def config_apply(request):
    text, changes, errors = "", None, {}
    if request.method == "POST":
        upload = request.FILES.get("file")
        text = upload.read(2 * 1024 * 1024).decode("utf-8", "replace") if upload else \
            request.POST.get("yaml", "")
        apply_now = request.POST.get("action") == "apply"
        try:
            changes = siteconfig.apply(Actor.from_request(request), text,
                                       dry_run=not apply_now, user=request.user,
                                       secrets=_secrets(request.POST.get("secrets", "")))
        except Invalid as exc:
            errors = exc.errors
        except Refused as exc:
            errors = {"apply": [str(exc)]}
        else:
            if apply_now:
                done = [c for c in changes if c["action"] != "unchanged"]
                messages.success(request, f"Applied: {len(done)} change"
                                          f"{'' if len(done) == 1 else 's'}." if done else
                                 "No changes: the file matches the site.")
                return redirect("config_apply")
    return render(request, "console/site_config.html", {
        "text": text, "changes": changes, "errors": errors,
        "changed": [c for c in changes or [] if c["action"] != "unchanged"],
        "unchanged": [c for c in changes or [] if c["action"] == "unchanged"]})
