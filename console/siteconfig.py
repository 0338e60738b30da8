"""The whole site's configuration as one YAML file: export, dry run, apply.

Each app contributes a section (TANGLAW_CONFIG_SECTIONS, by dotted path, so the
console imports no app): console the backends and vLLM plans, agents the MCP
servers, tools and agents, monitoring the alert rules. Apply runs every section
inside one transaction, in order (backends before the agents that use them),
collecting every section's errors with their paths; with any error, or for a
dry run, the transaction is rolled back, so a dry run reports exactly what
applying would do — creates, updates and (with `prune: true`) deletes — and a
broken file changes nothing. No secret is exported: keys and secret headers are
named, and their values are given at apply time (`secrets`, keyed
`backends.<name>.api_key`, `tools.<name>.<header>`, `mcp_servers.<name>.<header>`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import yaml
from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from console import audit
from console.actions import Invalid
from console.audit import Actor
from console.choices import AuditAction
from console.safeinput import UnsafeInput, load_yaml

VERSION = 1


class Section(Protocol):
    keys: tuple[str, ...]

    def export(self) -> dict[str, Any]: ...

    def apply(self, actor: Actor, data: dict[str, Any], *, dry_run: bool, prune: bool,
              user: Any, secrets: dict[str, str]) -> list[dict[str, str]]: ...


def list_of(data: Any, key: str) -> list:
    """A section's list (absent means empty), or Invalid naming the key."""
    if data in (None, ""):
        return []
    if not isinstance(data, list):
        raise Invalid({key: ["expected a list"]})
    return data


def named_items(items: list, section: str, what: str, fields: set[str],
                errors: dict[str, list[str]]) -> Iterator[tuple[str, str, dict]]:
    """A section's items that carry a name not seen before, as (path, name, item); the
    others go into `errors` under their paths (no name, a name twice), and so do the
    unknown fields of the ones given back."""
    seen: set[str] = set()
    for i, item in enumerate(items):
        path = f"{section}[{i}]"
        if not isinstance(item, dict) or not str(item.get("name") or "").strip():
            errors[f"{path}.name"] = [f"every {what} needs a name"]
            continue
        name = str(item["name"]).strip()
        if name in seen:
            errors[f"{path}.name"] = [f"{name!r} appears twice"]
            continue
        seen.add(name)
        for key in sorted(set(item) - fields - {"name"}):
            errors[f"{path}.{key}"] = ["unknown field"]
        yield path, name, item


def prefixed(exc: Invalid, path: str) -> dict[str, list[str]]:
    """An action's field errors under the path of the item in the file."""
    return {f"{path}.{field}": messages for field, messages in exc.errors.items()}


def sections() -> list[Section]:
    return [import_string(path)() for path in settings.TANGLAW_CONFIG_SECTIONS]


def export_data() -> dict[str, Any]:
    data: dict[str, Any] = {"version": VERSION, "prune": False}
    for section in sections():
        data.update(section.export())
    return data


def export_yaml() -> str:
    return yaml.safe_dump(export_data(), sort_keys=False, allow_unicode=True)


def _items(data: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """Every named item of an export by (section key, name); a section that is one
    mapping (deployment) by (key, "")."""
    out: dict[tuple[str, str], Any] = {}
    for key, value in data.items():
        if key in ("version", "prune"):
            continue
        if isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and "name" in item:
                    out[(key, str(item["name"]))] = item
        else:
            out[(key, "")] = value
    return out


def field_diff(old: Any, new: Any) -> list[dict[str, Any]]:
    """[{field, before, after}] where two exported items differ (a missing item: None)."""
    if isinstance(old, dict) or isinstance(new, dict):
        old_d = old if isinstance(old, dict) else {}
        new_d = new if isinstance(new, dict) else {}
        return [{"field": k, "before": old_d.get(k), "after": new_d.get(k)}
                for k in [*old_d, *[k for k in new_d if k not in old_d]]
                if k != "name" and old_d.get(k) != new_d.get(k)]
    return [] if old == new else [{"field": "value", "before": old, "after": new}]


def with_fields(changes: list[dict[str, Any]], before: dict[str, Any],
                after: dict[str, Any], secrets: dict[str, str]) -> list[dict[str, Any]]:
    """Each change with the fields it changes, read from the export before and after
    (what the file says, secrets never among them). An "update" that changes no field
    and was given no secret is reported "unchanged": an export applied back reports no
    changes."""
    old, new = _items(before), _items(after)
    out = []
    for change in changes:
        kind, name = change.get("kind", ""), change.get("name", "")
        key = next((k for k in (f"{kind}s", kind) if (k, name) in old or (k, name) in new
                    or (k, "") in old), "")
        found = (key, name) if (key, name) in old or (key, name) in new else (key, "")
        fields = field_diff(old.get(found), new.get(found)) if key else []
        secret_given = any(s.startswith(f"{key}.{name}.") for s in secrets)
        if change.get("action") == "update" and key and not fields and not secret_given:
            change = {**change, "action": "unchanged"}
        out.append({**change, "fields": fields})
    return out


def load_mapping(text: str, what: str, version: int) -> dict[str, Any]:
    """YAML text → a mapping with the expected version, or Invalid saying where it broke."""
    try:  # bounded: size, depth, alias expansion, values (console.safeinput)
        data = load_yaml(text, "file")
    except UnsafeInput as exc:
        raise Invalid(exc.errors) from None
    if not isinstance(data, dict):
        raise Invalid({"file": [f"expected a mapping with {what}"]})
    if data.get("version") != version:
        raise Invalid({"version": [f"expected version: {version}"]})
    return data


def load(text: str) -> dict[str, Any]:
    data = load_mapping(text, "version and the sections", VERSION)
    known = {"version", "prune"} | {k for s in sections() for k in s.keys}
    unknown = sorted(set(data) - known)
    if unknown:
        raise Invalid({key: ["unknown section"] for key in unknown})
    if not isinstance(data.get("prune", False), bool):
        raise Invalid({"prune": ["true or false"]})
    return data


def apply(actor: Actor, text: str, *, dry_run: bool = False, user: Any = None,
          secrets: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Validate and apply the whole file; returns the changes. Raises Invalid listing every
    error (nothing changed). A dry run returns the same changes and changes nothing."""
    data = load(text)
    prune = bool(data.get("prune"))
    errors: dict[str, list[str]] = {}
    changes: list[dict[str, Any]] = []
    # network work first (listing MCP servers' tools), never inside the transaction
    prepared: dict[str, Any] = {}
    for section in sections() if not dry_run else []:
        if hasattr(section, "prepare"):
            # an Invalid here is reported by the section's apply below, with the rest
            with contextlib.suppress(Invalid):
                prepared[type(section).__name__] = section.prepare(
                    actor, {key: data.get(key) for key in section.keys}, user=user,
                    secrets=secrets or {})
    with transaction.atomic():
        before = export_data()
        for section in sections():
            part = {key: data.get(key) for key in section.keys}
            extra = ({"prepared": prepared.get(type(section).__name__)}
                     if hasattr(section, "prepare") else {})
            try:
                changes += section.apply(actor, part, dry_run=dry_run, prune=prune, user=user,
                                         secrets=secrets or {}, **extra)
            except Invalid as exc:
                for path, messages in exc.errors.items():
                    errors.setdefault(path, []).extend(messages)
        if errors:
            transaction.set_rollback(True)
            failure = Invalid(errors)
            raise failure
        changes = with_fields(changes, before, export_data(), secrets or {})
        if dry_run:
            transaction.set_rollback(True)
        else:
            audit.record(AuditAction.CONFIG_APPLIED, actor,
                         after={"changes": [c for c in changes if c["action"] != "unchanged"],
                                "prune": prune})
    return changes
