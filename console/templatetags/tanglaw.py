from django import template

from console.choices import STATUS_COLOURS

register = template.Library()


@register.filter
def status_colour(status: str) -> str:
    return STATUS_COLOURS.get(status, "grey")


@register.filter
def human_bytes(value) -> str:
    if value in (None, ""):
        return "—"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


@register.filter
def ms(value) -> str:
    return "—" if value is None else f"{value:.0f} ms"


@register.filter
def split_words(value: str) -> list[str]:
    return value.split()


@register.filter
def get_value(mapping, key):
    return mapping.get(key, "") if hasattr(mapping, "get") else ""


@register.filter
def schema_params(schema) -> list[dict]:
    """A JSON Schema's arguments as rows to read (tools' parameters): name (nested
    objects as `a.b`, arrays as `a[]`), type (with its enum or format), required,
    description. Not an object schema: no rows."""
    rows: list[dict] = []

    def type_of(node: dict) -> str:
        kind = node.get("type")
        if isinstance(kind, list):
            kind = " or ".join(str(k) for k in kind)
        if not kind and ("anyOf" in node or "oneOf" in node):
            kind = " or ".join(str(o.get("type", "any")) for o in node.get("anyOf") or
                               node.get("oneOf") or [] if isinstance(o, dict))
        text = str(kind or "any")
        if isinstance(node.get("enum"), list):
            text += ": one of " + ", ".join(str(v) for v in node["enum"][:20])
        elif node.get("format"):
            text += f" ({node['format']})"
        return text

    def walk(node: dict, prefix: str, depth: int) -> None:
        props = node.get("properties")
        if not isinstance(props, dict) or depth > 4:
            return
        listed = node.get("required")
        required: list = listed if isinstance(listed, list) else []
        for name, child in props.items():
            if not isinstance(child, dict):
                child = {}
            path = f"{prefix}{name}"
            default = child.get("default")
            rows.append({"name": path, "type": type_of(child), "required": name in required,
                         "description": str(child.get("description") or ""),
                         "default": "" if default is None else str(default)})
            walk(child, path + ".", depth + 1)
            items = child.get("items")
            if isinstance(items, dict):
                walk(items, path + "[].", depth + 1)

    if isinstance(schema, dict):
        walk(schema, "", 0)
    return rows


@register.filter
def readable(value) -> str:
    """A stored value as a person reads it: text as itself, lists joined, objects as
    indented JSON with real characters (never Python's repr, never \\u escapes)."""
    import json

    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(str(v) for v in value) if value else "none"
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


@register.filter
def json_object(text) -> dict | None:
    """A JSON object from stored text (a tool call's arguments), or None."""
    import json

    if isinstance(text, dict):
        return text
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@register.filter
def tool_output(text) -> dict | None:
    """A stored tool message ({"type": "tool_output", "tool", "ok", "output"|"error"}) as
    {tool, ok, value} to show; None for anything else."""
    value = json_object(text)
    if not value or value.get("type") != "tool_output":
        return None
    ok = bool(value.get("ok"))
    return {"tool": str(value.get("tool") or ""), "ok": ok,
            "value": value.get("output") if ok else value.get("error")}


@register.filter
def highlighted(hit) -> str:
    """A search hit's excerpt with <mark> around its matches (`hit.highlights` spans),
    everything else escaped."""
    from django.utils.html import escape
    from django.utils.safestring import mark_safe

    text, at = hit.excerpt, 0
    out: list[str] = []
    for start, end in sorted(hit.highlights):
        if start < at:
            continue
        out.append(escape(text[at:start]))
        out.append(f"<mark>{escape(text[start:end])}</mark>")
        at = end
    out.append(escape(text[at:]))
    return mark_safe("".join(out))  # noqa: S308 - every piece above is escaped
