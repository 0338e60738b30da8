"""The fleet: hosts registered with the Prometheus exporters they already run, checked on
save, tested on request, scraped by the monitor (one lease per target and interval, so
two monitors never scrape a target twice in one interval), and read back for the API and
the pages. Backends belong to the host their URL names (matched by address)."""

from __future__ import annotations

import asyncio
import functools
import re
import time
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from console import audit, egress
from console.actions import Invalid
from console.audit import Actor
from console.choices import AuditAction
from console.models import Backend
from console.urlsafety import UnsafeURL, check_backend_url
from monitoring import queries, scrape, store
from monitoring.collectors import Reading
from monitoring.models import Host, HostTarget, State

FIELDS = {"name", "address", "labels", "enabled", "targets", "backend_ids"}
KINDS = HostTarget.Kind.values
MOST_TARGETS = 8
MOST_LABELS = 20
LABEL_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
DNS_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)"
                      r"(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MOST_URL = 500  # HostTarget.url
METRICS_KINDS = ("llamacpp", "vllm")  # backends with a /metrics of their own


def _targets(value: Any, errors: dict[str, list[str]]) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value or len(value) > MOST_TARGETS:
        errors["targets"] = [f"1–{MOST_TARGETS} exporters: [{{kind, url}}], kind one of "
                             f"{', '.join(KINDS)}"]
        return []
    out = []
    seen: dict[str, int] = {}
    for i, target in enumerate(value):
        where = f"targets[{i}]"
        if not isinstance(target, dict):
            errors[where] = ["{kind, url}"]
            continue
        for key in sorted(set(target) - {"kind", "url"}):
            errors[f"{where}.{key}"] = ["unknown field"]
        kind = target.get("kind")
        if kind not in KINDS:
            errors[f"{where}.kind"] = [f"one of {', '.join(KINDS)}"]
        url = target.get("url")
        try:
            if not isinstance(url, str) or CONTROL.search(url):
                raise UnsafeURL("the exporter's URL, e.g. http://10.0.0.5:9100/metrics")
            if len(url) > MOST_URL:
                raise UnsafeURL(f"at most {MOST_URL} characters")
            url = check_backend_url(url)
            _allowed(url)
        except UnsafeURL as exc:
            errors[f"{where}.url"] = [str(exc)]
            continue
        if not urlsplit(url).path.strip("/"):
            url += "/metrics"  # where exporters answer (and what http_sd tells Prometheus)
        if url in seen:
            errors[f"{where}.url"] = ["listed twice"]
        seen[url] = i
        out.append({"kind": str(kind), "url": url})
    return out


@functools.cache
def policy() -> egress.Policy:
    """Where exporters may be (TANGLAW_FLEET_NETWORKS), checked at save time and at every
    connection, as HTTP tools' allow-lists are."""
    from django.core.exceptions import ImproperlyConfigured

    try:
        return egress.Policy(egress.parse_allow_list(settings.TANGLAW_FLEET_NETWORKS))
    except ValueError as exc:
        raise ImproperlyConfigured(f"TANGLAW_FLEET_NETWORKS: {exc}") from None


def _allowed(url: str) -> None:
    """UnsafeURL unless the URL's host may be scraped: an address in the fleet's
    networks, or a name (checked against them when it is resolved, at each connection)."""
    host = urlsplit(url).hostname or ""
    try:
        policy().check_host(host)
    except UnsafeURL as exc:
        raise UnsafeURL(f"{exc}; the fleet's networks are set by TANGLAW_FLEET_NETWORKS") \
            from None


def _is_ip(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def clean(data: Any, host: Host | None = None) -> dict[str, Any]:
    """The host's fields, checked (every error by field: `targets[1].url`)."""
    if not isinstance(data, dict):
        raise Invalid({"body": ["{name, address, labels?, targets: [{kind, url}]}"]})
    errors: dict[str, list[str]] = {k: ["unknown field"] for k in sorted(set(data) - FIELDS)}
    out: dict[str, Any] = {}
    if host is None or "name" in data:
        name = data.get("name")
        name = name.strip() if isinstance(name, str) else ""
        if not name or len(name) > 100 or CONTROL.search(name):
            errors["name"] = ["a name of 1–100 characters (no control characters)"]
        elif Host.objects.filter(name=name).exclude(pk=host.pk if host and host.pk else 0
                                                    ).exists():
            errors["name"] = [f"a host named {name} exists already"]
        out["name"] = name
    if host is None or "address" in data:
        address = data.get("address")
        address = address.strip().lower().rstrip(".").removeprefix("[").removesuffix("]") \
            if isinstance(address, str) else ""
        if not (_is_ip(address) or DNS_NAME.fullmatch(address)):
            errors["address"] = ["its host name or IP address (no scheme or port), e.g. "
                                 "10.0.0.5 or jetson-03.local"]
        out["address"] = address
    if "labels" in data or host is None:
        labels = data.get("labels", {})
        labels = {} if labels is None else labels
        if not isinstance(labels, dict) or len(labels) > MOST_LABELS:
            errors["labels"] = [f"an object of at most {MOST_LABELS} short names and values, "
                                f"e.g. {{\"site\": \"manila\", \"rack\": \"a3\"}}"]
        else:
            for key, value in labels.items():
                if not LABEL_KEY.fullmatch(str(key)):
                    errors[f"labels.{key}"] = ["a name of letters, digits and _"]
                elif not isinstance(value, str) or len(value) > 100 or "," in value \
                        or "=" in value or CONTROL.search(value):
                    errors[f"labels.{key}"] = ["text of at most 100 characters, without "
                                               "commas, = or control characters"]
            out["labels"] = {str(k): v for k, v in labels.items()}
    if "enabled" in data:
        if not isinstance(data["enabled"], bool):
            errors["enabled"] = ["true or false"]
        out["enabled"] = data["enabled"]
    if host is None or "targets" in data:
        out["targets"] = _targets(data.get("targets"), errors)
    if "backend_ids" in data:
        ids = data["backend_ids"]
        if not isinstance(ids, list) or not all(
                isinstance(i, int) and not isinstance(i, bool) for i in ids):
            errors["backend_ids"] = ["a list of backend ids (those on this host whose URL "
                                     "does not name its address)"]
        else:
            known = set(Backend.objects.filter(pk__in=ids).values_list("pk", flat=True))
            missing = sorted(set(ids) - known)
            if missing:
                errors["backend_ids"] = [f"no backend {', '.join(map(str, missing))}"]
            out["backend_ids"] = sorted(set(ids))
    if errors:
        raise Invalid(errors)
    return out


def _snapshot(host: Host) -> dict[str, Any]:
    return {"name": host.name, "address": host.address, "labels": host.labels,
            "enabled": host.enabled,
            "targets": [{"kind": t.kind, "url": t.url} for t in host.targets.all()],
            "backend_ids": sorted(host.backends.values_list("pk", flat=True))}


def _forget(target_ids: list[int]) -> None:
    """A removed target's lease and counters go with it."""
    from monitoring.models import Lease

    names = [f"scrape:{pk}" for pk in target_ids]
    Lease.objects.filter(name__in=names).delete()
    State.objects.filter(key__in=names).delete()


def _set_targets(host: Host, targets: list[dict[str, str]]) -> None:
    kept = {(t.kind, t.url): t for t in host.targets.all()}
    wanted = {(t["kind"], t["url"]) for t in targets}
    gone = host.targets.exclude(pk__in=[t.pk for key, t in kept.items() if key in wanted])
    _forget(list(gone.values_list("pk", flat=True)))
    gone.delete()
    HostTarget.objects.bulk_create([HostTarget(host=host, kind=t["kind"], url=t["url"])
                                    for t in targets if (t["kind"], t["url"]) not in kept])


def create_host(actor: Actor, data: Any) -> Host:
    fields = clean(data)
    with transaction.atomic():
        host = Host.objects.create(**{k: v for k, v in fields.items()
                                      if k not in ("targets", "backend_ids")})
        _set_targets(host, fields["targets"])
        host.backends.set(fields.get("backend_ids", []))
        audit.record(AuditAction.HOST_CREATED, actor, target=host, after=_snapshot(host))
    return host


def update_host(actor: Actor, host: Host, data: Any) -> Host:
    fields = clean(data, host)
    before = _snapshot(host)
    with transaction.atomic():
        for key, value in fields.items():
            if key not in ("targets", "backend_ids"):
                setattr(host, key, value)
        host.save()
        if "targets" in fields:
            _set_targets(host, fields["targets"])
        if "backend_ids" in fields:
            host.backends.set(fields["backend_ids"])
        host = Host.objects.get(pk=host.pk)  # not the targets a caller prefetched
        audit.record(AuditAction.HOST_UPDATED, actor, target=host, before=before,
                     after=_snapshot(host))
    return host


def delete_host(actor: Actor, host: Host) -> None:
    with transaction.atomic():
        pk, before = host.pk, _snapshot(host)
        _forget(list(host.targets.values_list("pk", flat=True)))
        host.delete()
        audit.record(AuditAction.HOST_DELETED, actor, target_type="monitoring.host",
                     target_id=pk, before=before)


def backends_of(hosts: list[Host]) -> dict[int, list[Backend]]:
    """Each host's backends: those chosen for it, and those whose URL names its address
    (a backend chosen for one host is not matched to another by address)."""
    by_address: dict[str, list[int]] = {}
    for host in hosts:
        by_address.setdefault(host.address, []).append(host.pk)
    chosen: dict[int, list[int]] = {}
    for host_id, backend_id in Host.backends.through.objects.filter(
            host_id__in=[h.pk for h in hosts]).values_list("host_id", "backend_id"):
        chosen.setdefault(backend_id, []).append(host_id)
    taken = set(Host.backends.through.objects.values_list("backend_id", flat=True))
    out: dict[int, list[Backend]] = {h.pk: [] for h in hosts}
    for backend in Backend.objects.order_by("name"):
        owners = chosen.get(backend.pk)
        if owners is None and backend.pk not in taken:
            name = (urlsplit(backend.base_url).hostname or "").lower().rstrip(".")
            owners = by_address.get(name, [])
        for pk in owners or []:
            out[pk].append(backend)
    return out


def host_scopes() -> dict[int, str]:
    """Each backend's host scope: `host:ID` for one on a fleet host, else `host` (this
    machine). Right-sizing and the advisor read the memory of the host a backend is on."""
    hosts = list(Host.objects.all())  # a disabled host's backends are still on it
    return {b.pk: f"host:{h.pk}" for h, bs in zip(hosts, backends_of(hosts).values(),
                                                     strict=True) for b in bs}


def scopes_on(host: Host) -> tuple[set[str], str]:
    """What is on a host, as monitoring scopes: the host, its backends and the agents
    on them (a set), and its GPUs (a prefix: `gpu:ID/`). Pages filter by it."""
    from agents.models import Agent

    backends = [b.pk for b in backends_of([host])[host.pk]]
    scopes = {host.scope, *(f"backend:{pk}" for pk in backends),
              *(f"agent:{pk}" for pk in Agent.objects.filter(backend_id__in=backends)
                .values_list("pk", flat=True))}
    return scopes, queries.gpu_prefix(host.scope)


def host_filter(value: Any) -> tuple[Host | None, Any]:
    """A page's `?host=ID`: the host, and a Q on `scope` for what is on it; (None, None)
    when the value names no host (the page shows everything)."""
    from django.db.models import Q

    from console.safeinput import small_int

    pk = small_int(value) if isinstance(value, str) else None
    host = Host.objects.filter(pk=pk).first() if pk is not None else None
    if host is None:
        return None, None
    scopes, gpus = scopes_on(host)
    return host, Q(scope__in=scopes) | Q(scope__startswith=gpus)


# -- scraping -----------------------------------------------------------------------------

def _previous(targets: list[HostTarget]) -> dict[int, dict[str, float]]:
    keys = {f"scrape:{t.pk}": t.pk for t in targets}
    return {keys[s.key]: s.value for s in State.objects.filter(key__in=list(keys))}


# scrapes under way at once: each answer's parse runs on the monitor's event loop, and
# 200 answers arriving together held it for ~100 ms (bench: docs/benchmarks.md)
AT_ONCE = 8
SLOW_S = 0.25
IN_FLIGHT = 32  # connections open at once, slow ones included
CONNECT_S = 2.0  # a box that does not answer a connection in this time is down


async def _scrape_all(targets: list[HostTarget], previous: dict[int, dict[str, float]]
                      ) -> list[scrape.Scraped]:
    slots, flying = asyncio.Semaphore(AT_ONCE), asyncio.Semaphore(IN_FLIGHT)

    async def fetch(target: HostTarget) -> scrape.Scraped:
        # at most IN_FLIGHT connections (the pool's size): a scrape's timeout never
        # counts time spent waiting for one behind boxes that do not answer
        async with flying:
            return await scrape.scrape(client, target.kind, target.url, target.host_id,
                                       previous.get(target.pk, {}))

    async def one(target: HostTarget) -> scrape.Scraped:
        await slots.acquire()
        task = asyncio.ensure_future(fetch(target))
        held = True
        try:
            # a target still waiting after SLOW_S (a box that does not answer) gives its
            # slot to the next, so dead hosts never hold the live ones up
            done, _ = await asyncio.wait({task}, timeout=SLOW_S)
            if not done:
                slots.release()
                held = False
            result = await task
        finally:
            if held:
                slots.release()
        await asyncio.sleep(0)  # the loop's other work between two answers
        return result

    import httpx

    async with egress.client(max_connections=IN_FLIGHT, policy=policy(),
                             timeout=httpx.Timeout(scrape.TIMEOUT_S,
                                                   connect=CONNECT_S)) as client:
        found = await asyncio.gather(*(one(t) for t in targets), return_exceptions=True)
    return [r if isinstance(r, scrape.Scraped) else scrape.Scraped(
                False, error=f"the scrape failed: {type(r).__name__}"[:300]) for r in found]


def status_of(oks: list[bool], errors: list[str]) -> tuple[str, str]:
    if oks and all(oks):
        return Host.Status.UP, ""
    reason = next((e for e in errors if e), "")
    if any(oks):
        return Host.Status.DEGRADED, reason
    return Host.Status.DOWN, reason


def scrape_targets(targets: list[HostTarget], run: Any = asyncio.run) -> int:
    """Scrape these targets now (the monitor's step, for the ones it holds a lease on):
    their readings into the sample store, each target's last scrape and each host's
    status on their rows, `host_up` per host. Returns how many readings."""
    if not targets:
        return 0
    previous = _previous(targets)
    results = run(_scrape_all(targets, previous))  # `run`: the bench watches the loop
    now = timezone.now()
    readings: list[Reading] = []
    by_host: dict[int, list[tuple[HostTarget, scrape.Scraped]]] = {}
    for target, result in zip(targets, results, strict=True):
        by_host.setdefault(target.host_id, []).append((target, result))
        readings += result.readings
        target.last_scrape_at, target.ok, target.error = now, result.ok, result.error
        target.duration_ms, target.families = result.duration_ms, result.families
        if result.ok:
            target.latest = result.latest
        if result.counters:
            State.objects.update_or_create(key=f"scrape:{target.pk}",
                                           defaults={"value": result.counters})
    HostTarget.objects.bulk_update(targets, ["last_scrape_at", "ok", "error", "duration_ms",
                                             "families", "latest"])
    for host_id, pairs in by_host.items():
        # a host's status is over all its targets: those another monitor scraped this
        # interval count with their last result
        others = HostTarget.objects.filter(host_id=host_id).exclude(
            pk__in=[t.pk for t, _ in pairs]).values_list("ok", "error")
        oks = [r.ok for _, r in pairs] + [bool(ok) for ok, _ in others if ok is not None]
        errors = [r.error for _, r in pairs] + [e for _, e in others]
        status, reason = status_of(oks, errors)
        Host.objects.filter(pk=host_id).update(status=status, status_reason=reason[:300],
                                               last_scrape_at=now)
        readings.append(Reading("host_up", f"host:{host_id}",
                                0.0 if status == Host.Status.DOWN else 1.0))
    return store.record(readings, now)


DISCOVERED = (("node_exporter", 9100), ("dcgm_exporter", 9400), ("nvidia_gpu_exporter", 9835))


def discover(address: Any) -> list[dict[str, str]] | str:
    """The exporters answering on an address's usual ports (node exporter 9100, DCGM
    9400, nvidia_gpu_exporter 9835), each recognised by what it returns; a string saying
    why when the address is not one to try. The same URL checks as everything else."""
    try:
        host = clean({"address": address}, Host(pk=None))["address"]
    except Invalid as exc:
        return " ".join(exc.errors["address"])
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    candidates = []
    for kind, port in DISCOVERED:
        try:
            url = check_backend_url(f"http://{shown}:{port}/metrics")
            _allowed(url)
        except UnsafeURL as exc:
            return str(exc)
        candidates.append((kind, url))

    async def run() -> list[scrape.Scraped]:
        async with egress.client(max_connections=4, policy=policy(),
                                 timeout=CONNECT_S * 2) as client:
            return await asyncio.gather(*(scrape.scrape(client, kind, url, 0, {})
                                          for kind, url in candidates))

    return [{"kind": kind, "url": url} for (kind, url), result
            in zip(candidates, asyncio.run(run()), strict=True) if result.ok]


def test_host(actor: Actor, host: Host) -> list[dict[str, Any]]:
    """*Test*: each target scraped once, now, and what it returned (nothing is stored
    but the audit event)."""
    targets = list(host.targets.all())
    started = time.monotonic()
    results = asyncio.run(_scrape_all(targets, {})) if targets else []
    out = [{"kind": t.kind, "url": t.url, "ok": r.ok, "error": r.error,
            "duration_ms": r.duration_ms, "families": r.families,
            "readings": sorted({x.metric for x in r.readings}), "latest": r.latest}
           for t, r in zip(targets, results, strict=True)]
    audit.record(AuditAction.HOST_TESTED, actor, target=host, after={
        "targets": [{"kind": o["kind"], "ok": o["ok"], "error": o["error"]} for o in out],
        "ms": round((time.monotonic() - started) * 1000)})
    return out


# -- reading back -------------------------------------------------------------------------

def host_dict(host: Host, backends: list[Backend] | None = None) -> dict[str, Any]:
    targets = list(host.targets.all())
    latest: dict[str, Any] = {}
    for target in targets:
        if target.ok:
            latest.update({k: v for k, v in (target.latest or {}).items() if k != "gpus"})
            latest.setdefault("gpus", []).extend((target.latest or {}).get("gpus", []))
    return {"id": host.pk, "name": host.name, "address": host.address, "labels": host.labels,
            "enabled": host.enabled, "status": host.status, "status_reason": host.status_reason,
            "scope": host.scope, "last_scrape_at": host.last_scrape_at,
            "targets": [{"id": t.pk, "kind": t.kind, "url": t.url,
                         "last_scrape_at": t.last_scrape_at, "ok": t.ok, "error": t.error,
                         "duration_ms": t.duration_ms, "families": t.families}
                        for t in targets],
            "latest": {"cpu_percent": latest.get("cpu_percent"),
                       "memory_percent": latest.get("memory_percent"),
                       "memory_total_bytes": latest.get("memory_total_bytes"),
                       "disk_percent": latest.get("disk_percent"),
                       "load_1m": latest.get("load_1m"), "gpus": latest.get("gpus", [])},
            "backends": [{"id": b.pk, "name": b.name, "status": b.status}
                         for b in (backends if backends is not None
                                   else backends_of([host])[host.pk])]}


def prometheus_targets(request_host: str, scheme: str) -> list[dict[str, Any]]:
    """Prometheus `http_sd_configs`: every host's exporters, every backend's metrics
    endpoint and Tanglaw's own /metrics, each group with its labels."""
    groups: list[dict[str, Any]] = []
    hosts = list(Host.objects.filter(enabled=True).prefetch_related("targets"))
    for host in hosts:
        for target in host.targets.all():
            parts = urlsplit(target.url)
            labels = {"host": host.name, "kind": target.kind, "__scheme__": parts.scheme,
                      "__metrics_path__": parts.path or "/metrics",
                      **{f"label_{k}": v for k, v in host.labels.items()}}
            if "site" in host.labels:
                labels["site"] = host.labels["site"]
            groups.append({"targets": [parts.netloc], "labels": labels})
    owners = {b.pk: h for h, bs in zip(hosts, backends_of(hosts).values(), strict=True)
              for b in bs}
    # the engines that serve Prometheus metrics themselves (llama-server with --metrics)
    for backend in Backend.objects.filter(enabled=True, kind__in=METRICS_KINDS).order_by("name"):
        parts = urlsplit(backend.base_url)
        owner = owners.get(backend.pk)
        groups.append({"targets": [parts.netloc], "labels": {
            "backend": backend.name, "kind": backend.kind, "__scheme__": parts.scheme,
            "__metrics_path__": "/metrics", "host": owner.name if owner else "",
            **({"site": owner.labels["site"]} if owner and "site" in owner.labels else {})}})
    groups.append({"targets": [request_host], "labels": {
        "kind": "tanglaw", "__scheme__": scheme, "__metrics_path__": "/metrics"}})
    return groups
