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
