"""Changes to the gateway's configuration: keys (create, limit, revoke) and model
aliases (create, update, delete). Pages and the JSON API call these; each validates,
writes its audit event and raises console.actions.Invalid({field: [messages]}) on bad
input, so every caller answers the same way."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from console import audit
from console.actions import Invalid, Refused
from console.actions.users import revoke_token
from console.audit import Actor
from console.choices import AuditAction
from console.models import ApiToken, Backend, User
from console.permissions import has_perm
from gateway.models import Alias

# the largest values a limit may take: beyond these a limit is no limit
LIMITS = {"rpm": 1_000_000, "tokens_per_day": 10**12, "tokens_per_month": 10**13,
          "max_streams": 10_000}
MAX_PATTERNS = 50
MAX_TARGETS = 10
# an alias is one word clients type as `model`: `default`, `small`, `qwen-fast`, `gpt-4o`
ALIAS_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


def _name(value: Any, errors: dict[str, list[str]]) -> str:
    name = value.strip() if isinstance(value, str) else ""
    if not name or len(name) > 100:
        errors["name"] = ["Enter a name (at most 100 characters)."]
    return name


def _expires(value: Any, errors: dict[str, list[str]]) -> datetime | None:
    if value in (None, ""):
        return None
    when = parse_datetime(value) if isinstance(value, str) else value
    if not isinstance(when, datetime):
        errors["expires_at"] = ["Give a date and time (ISO 8601), or null for never."]
        return None
    if timezone.is_naive(when):
        when = timezone.make_aware(when)
    if when <= timezone.now():
        errors["expires_at"] = ["The expiry must be in the future."]
    return when


def _scopes(value: Any, errors: dict[str, list[str]]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        errors["scopes"] = ["Give a list of scopes."]
        return []
    unknown = [s for s in value if s not in ApiToken.SCOPES]
    if unknown:
        errors["scopes"] = [f"Unknown scope {unknown[0]!r}: use {', '.join(ApiToken.SCOPES)} "
                            f"(none: everything the owner's role allows)."]
    return [s for s in ApiToken.SCOPES if s in value]


def _patterns(value: Any, errors: dict[str, list[str]]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        errors["allowed_models"] = ["Give a list of model name patterns."]
        return []
    out: list[str] = []
    for pattern in (p.strip() for p in value):
        if not pattern:
            continue
        if len(pattern) > 200 or any(c.isspace() or not c.isprintable() for c in pattern):
            errors["allowed_models"] = [f"{pattern[:40]!r}: a pattern is one model name "
                                        f"(`agent/*`, `llama/qwen*`, `default`), at most 200 "
                                        f"characters, no spaces."]
            return []
        if pattern not in out:
            out.append(pattern)
    if len(out) > MAX_PATTERNS:
        errors["allowed_models"] = [f"At most {MAX_PATTERNS} patterns."]
    return out


def _limit(field: str, value: Any, errors: dict[str, list[str]]) -> int | None:
    if value in (None, ""):
        return None
    high = LIMITS[field]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
        errors[field] = [f"A whole number from 1 to {high:,}, or empty for no limit."]
        return None
    return value


KEY_FIELDS = ("name", "expires_at", "scopes", "allowed_models", "log_content", *LIMITS)


def _clean_key(data: dict[str, Any]) -> dict[str, Any]:
    """The key fields present in `data`, checked; Invalid naming each bad field."""
    unknown = set(data) - set(KEY_FIELDS) - {"owner"}
    if unknown:
        raise Invalid({sorted(unknown)[0]: ["Not a field of a gateway key."]})
    errors: dict[str, list[str]] = {}
    out: dict[str, Any] = {}
    if "name" in data:
        out["name"] = _name(data["name"], errors)
    if "expires_at" in data:
        out["expires_at"] = _expires(data["expires_at"], errors)
    if "scopes" in data:
        out["scopes"] = _scopes(data["scopes"], errors)
    if "allowed_models" in data:
        out["allowed_models"] = _patterns(data["allowed_models"], errors)
    for field in LIMITS:
        if field in data:
            out[field] = _limit(field, data[field], errors)
    if "log_content" in data:
        if isinstance(data["log_content"], bool):
            out["log_content"] = data["log_content"]
        else:
            errors["log_content"] = ["true or false."]
    if errors:
        raise Invalid(errors)
    return out


def key_state(token: ApiToken) -> dict[str, Any]:
    """What the audit log records of a key: never its value or digest."""
    return {"name": token.name, "user": token.user.username, "hint": token.hint,
            **token.limits()}


def _owner(user: User, owner: Any) -> User:
    if owner is None or owner == "" or owner == user.pk or owner == user:
        return user
    if not has_perm(user, "gateway.keys.manage"):
        raise Invalid({"owner": ["You may create keys only for yourself."]})
    if isinstance(owner, User):
        found = owner if owner.is_active else None
    elif isinstance(owner, int) and not isinstance(owner, bool):
        found = User.objects.filter(pk=owner, is_active=True).first()
    else:
        found = None
    if found is None:
        raise Invalid({"owner": ["No such active user."]})
    return found


def create_key(actor: Actor, user: User, data: dict[str, Any]) -> tuple[ApiToken, str]:
    """A gateway key for `data["owner"]` (a user id; default: `user`, who acts; only
    admins create keys for others). The raw value is returned once, never stored."""
    owner = _owner(user, data.get("owner"))
    fields = _clean_key({"name": data.get("name"), **{k: v for k, v in data.items()
                                                     if k not in ("name", "owner")}})
    raw = ApiToken.generate()
    with transaction.atomic():
        token = ApiToken.objects.create(user=owner, digest=ApiToken.digest_of(raw),
                                        hint=raw[:8], **fields)
        audit.record(AuditAction.TOKEN_CREATED, actor, target=token, after=key_state(token))
    return token, raw


def update_key(actor: Actor, token: ApiToken, changes: dict[str, Any]) -> ApiToken:
    """Change a key's name, expiry, scopes, models or limits (`changes` holds only what
    changes; a null limit removes it). A revoked key stays as it was."""
    if "owner" in changes:
        raise Invalid({"owner": ["A key keeps its owner: create one for the other user."]})
    if token.revoked_at is not None:
        raise Refused(f"the key {token.name} is revoked; create a new one")
    fields = _clean_key(changes)
    before = key_state(token)
    for name, value in fields.items():
        setattr(token, name, value)
    after = key_state(token)
    if after == before:
        return token
    with transaction.atomic():
        token.save(update_fields=list(fields))
        audit.record(AuditAction.TOKEN_UPDATED, actor, target=token, before=before, after=after)
    return token


def revoke_key(actor: Actor, token: ApiToken) -> None:
    """Revoke the key (refused on every worker at once: the key cache follows the
    configuration generation) and resolve the alerts on its budget."""
    if token.revoked_at is not None:
        return
    from monitoring.alerts import resolve_target  # monitoring builds on gateway, not back

    with transaction.atomic():
        revoke_token(actor, token)
        resolve_target(actor, f"key:{token.pk}", f"key {token.name} was revoked")


# -- aliases ----------------------------------------------------------------------


def _targets(value: Any, errors: dict[str, list[str]]) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        errors["targets"] = ["Give at least one target: {backend_id, model}, in the order "
                             "they are tried."]
        return []
    if len(value) > MAX_TARGETS:
        errors["targets"] = [f"At most {MAX_TARGETS} targets."]
        return []
    ids = [t.get("backend_id", t.get("backend")) for t in value if isinstance(t, dict)]
    known = set(Backend.objects.filter(
        pk__in=[i for i in ids if isinstance(i, int) and not isinstance(i, bool)])
        .values_list("pk", flat=True))
    problems, out = [], []
    for n, item in enumerate(value):
        backend = item.get("backend_id", item.get("backend")) if isinstance(item, dict) else None
        model = item.get("model") if isinstance(item, dict) else None
        model = model.strip() if isinstance(model, str) else ""
        if backend not in known or isinstance(backend, bool):
            problems.append(f"targets[{n}]: no such backend")
        elif not model or len(model) > 200:
            problems.append(f"targets[{n}]: enter the model (at most 200 characters)")
        elif {"backend": backend, "model": model} in out:
            problems.append(f"targets[{n}]: listed twice")
        else:
            out.append({"backend": backend, "model": model})
    if problems:
        errors["targets"] = problems
    return out


def _clean_alias(data: dict[str, Any], alias: Alias | None) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    out: dict[str, Any] = {}
    if alias is None or "name" in data:
        name = data.get("name")
        name = name.strip() if isinstance(name, str) else ""
        if not ALIAS_NAME.fullmatch(name):
            errors["name"] = ["One word of letters, digits, '.', '_', ':' or '-' (at most 64), "
                              "without '/': names with a slash mean <backend>/<model> or "
                              "agent/<name>."]
        elif Alias.objects.filter(name=name).exclude(pk=alias.pk if alias else -1).exists():
            errors["name"] = [f"An alias named {name} already exists."]
        out["name"] = name
    if alias is None or "description" in data:
        description = data.get("description") or ""
        if not isinstance(description, str) or len(description) > 200:
            errors["description"] = ["At most 200 characters."]
        out["description"] = description.strip() if isinstance(description, str) else ""
    if alias is None or "targets" in data:
        out["targets"] = _targets(data.get("targets"), errors)
    unknown = set(data) - {"name", "description", "targets"}
    if unknown:
        errors[sorted(unknown)[0]] = ["Not a field of an alias."]
    if errors:
        raise Invalid(errors)
    return out


def create_alias(actor: Actor, data: dict[str, Any]) -> Alias:
    fields = _clean_alias(data, None)
    with transaction.atomic():
        alias = Alias.objects.create(**fields)
        audit.record(AuditAction.ALIAS_CREATED, actor, target=alias,
                     after=alias.audit_snapshot())
    return alias


def update_alias(actor: Actor, alias: Alias, changes: dict[str, Any]) -> Alias:
    fields = _clean_alias(changes, alias)
    before = alias.audit_snapshot()
    for name, value in fields.items():
        setattr(alias, name, value)
    if alias.audit_snapshot() == before:
        return alias
    with transaction.atomic():
        alias.save(update_fields=[*fields, "updated_at"])
        audit.record(AuditAction.ALIAS_UPDATED, actor, target=alias, before=before,
                     after=alias.audit_snapshot())
    return alias


def delete_alias(actor: Actor, alias: Alias) -> None:
    with transaction.atomic():
        before, pk = alias.audit_snapshot(), alias.pk
        alias.delete()
        audit.record(AuditAction.ALIAS_DELETED, actor, target_type="gateway.alias",
                     target_id=pk, before=before)
