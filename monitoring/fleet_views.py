"""Fleet pages: the hosts as cards (up or down, CPU, memory, GPUs, engines on it, firing
alerts) with a form to add one, and a host's page (the local host's charts with its
scopes, each exporter's last scrape, *Test*, change and remove)."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from console.actions import Invalid
from console.audit import Actor
from console.models import Backend
from console.permissions import has_perm, require
from monitoring import fleet, store
from monitoring.choices import AlertState
from monitoring.models import Alert, Host, HostTarget

FORM_ROWS = fleet.MOST_TARGETS  # the first shown, the others folded


def _labels(text: str) -> dict[str, str] | str:
    """`site=manila, rack=a3` as labels; the text itself when it does not read as such
    (the action names the field)."""
    out: dict[str, str] = {}
    for part in [p.strip() for p in text.replace("\n", ",").split(",") if p.strip()]:
        key, sep, value = part.partition("=")
        if not sep:
            return text
        out[key.strip()] = value.strip()
    return out


def _from_post(post) -> dict:
    data: dict = {"name": post.get("name", ""), "address": post.get("address", ""),
                  "labels": _labels(post.get("labels", "")), "targets": []}
    if "enabled-shown" in post:
        data["enabled"] = "enabled" in post
    if "backends-shown" in post:  # the edit form's checkboxes (none ticked: none chosen)
        from console.safeinput import small_int

        data["backend_ids"] = [pk for v in post.getlist("backend")
                               if (pk := small_int(v)) is not None]
    for i in range(FORM_ROWS):
        url = post.get(f"url-{i}", "").strip()
        if url:
            data["targets"].append({"kind": post.get(f"kind-{i}", ""), "url": url})
    return data


def _rows(posted=None, targets=None) -> list[dict]:
    """The form's exporter rows: as posted, else the host's targets, else empty."""
    rows = []
    for i in range(FORM_ROWS):
        if posted is not None and (posted.get(f"url-{i}") or posted.get(f"kind-{i}")):
            rows.append({"i": i, "kind": posted.get(f"kind-{i}", ""),
                         "url": posted.get(f"url-{i}", "")})
        elif targets is not None and i < len(targets):
            rows.append({"i": i, "kind": targets[i].kind, "url": targets[i].url})
        else:
            rows.append({"i": i, "kind": "", "url": ""})
    return rows


def _open_alerts() -> dict[str, int]:
    counts: dict[str, int] = {}
    for scope in Alert.objects.filter(state__in=(AlertState.FIRING, AlertState.ACKNOWLEDGED),
                                      scope__startswith="host:").values_list("scope",
                                                                             flat=True):
        counts[scope] = counts.get(scope, 0) + 1
    for scope in Alert.objects.filter(state__in=(AlertState.FIRING, AlertState.ACKNOWLEDGED),
                                      scope__startswith="gpu:").values_list("scope",
                                                                            flat=True):
        host = scope.removeprefix("gpu:").partition("/")
        if host[1]:
            counts[f"host:{host[0]}"] = counts.get(f"host:{host[0]}", 0) + 1
    return counts


@require("hosts.view")
@require_http_methods(["GET", "POST"])
def fleet_page(request):
    errors: dict = {}
    if request.method == "POST":
        if not has_perm(request.user, "hosts.change"):
            raise PermissionDenied("Your role may not change the fleet.")
        if request.POST.get("action") == "discover":
            found = fleet.discover(request.POST.get("address", ""))
            if isinstance(found, str):
                errors = {"address": [found]}
            else:
                posted = request.POST.copy()
                for i, target in enumerate(found[:FORM_ROWS]):
                    posted[f"kind-{i}"], posted[f"url-{i}"] = target["kind"], target["url"]
                messages.info(request, f"Found {len(found)} exporter(s) on "
                                       f"{request.POST.get('address', '')}." if found else
                              "No exporter answered on the usual ports (9100, 9400, 9835).")
                return _render(request, {}, posted)
        else:
            try:
                host = fleet.create_host(Actor.from_request(request), _from_post(request.POST))
            except Invalid as exc:
                errors = exc.errors
            else:
                messages.success(request, f"Added {host.name}: the monitor scrapes its "
                                          f"exporters from its next round.")
                return redirect("fleet_host", pk=host.pk)
    return _render(request, errors, request.POST)


def _render(request, errors: dict, posted):
    hosts = list(Host.objects.prefetch_related("targets"))
    owned = fleet.backends_of(hosts)
    alerts = _open_alerts()
    cards = [{**fleet.host_dict(h, owned[h.pk]), "alerts": alerts.get(h.scope, 0)}
             for h in hosts]
    return render(request, "monitoring/fleet.html", {
        "cards": cards, "errors": errors, "posted": posted, "rows": (rows := _rows(posted)),
        "more_open": any(r["url"] for r in rows[1:]),
        "kinds": HostTarget.Kind.choices,
        "counts": {s: sum(1 for c in cards if c["status"] == s) for s in Host.Status.values}})


@require("hosts.view")
@require_http_methods(["GET", "POST"])
def host_page(request, pk: int):
    host = get_object_or_404(Host.objects.prefetch_related("targets"), pk=pk)
    tested = None
    errors: dict = {}
    if request.method == "POST":
        if not has_perm(request.user, "hosts.change"):
            raise PermissionDenied("Your role may not change the fleet.")
        action = request.POST.get("action", "")
        if action == "test":
            tested = fleet.test_host(Actor.from_request(request), host)
        elif action == "save":
            try:
                fleet.update_host(Actor.from_request(request), host, _from_post(request.POST))
            except Invalid as exc:
                errors = exc.errors
            else:
                messages.success(request, f"Saved {host.name}.")
                return redirect("fleet_host", pk=host.pk)
    found = fleet.host_dict(host)
    alerts = Alert.objects.select_related("rule").filter(
        state__in=(AlertState.FIRING, AlertState.ACKNOWLEDGED)).filter(
        scope__in=[host.scope, *[g["scope"] for g in found["latest"]["gpus"]]])
    return render(request, "monitoring/fleet_host.html", {
        "host": host, "found": found, "tested": tested, "alerts": alerts,
        "windows": list(store.WINDOWS), "errors": errors,
        "rows": (rows := _rows(request.POST if errors else None, list(host.targets.all()))),
        "more_open": any(r["url"] for r in rows[1:]),
        "kinds": HostTarget.Kind.choices,
        "labels_text": ", ".join(f"{k}={v}" for k, v in host.labels.items()),
        "all_backends": Backend.objects.order_by("name"),
        "chosen": set(host.backends.values_list("pk", flat=True)),
        "targets": list(host.targets.all())})


@require("hosts.change")
@require_POST
def host_delete(request, pk: int):
    host = get_object_or_404(Host, pk=pk)
    fleet.delete_host(Actor.from_request(request), host)
    messages.success(request, f"Removed {host.name}; its samples age out with the others.")
    return redirect("fleet")
