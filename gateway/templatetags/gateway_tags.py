"""Numbers on the gateway pages: counts with thousands separators, compact counts."""

from django import template

register = template.Library()


@register.filter
def thousands(value) -> str:
    """1234567 → "1,234,567"; None → "—"."""
    if value is None or value == "":
        return "—"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


@register.filter
def compact(value) -> str:
    """1234 → "1.2k", 5600000 → "5.6M" (tiles); None → "—"."""
    if value is None or value == "":
        return "—"
    number = float(value)
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(number) >= size:
            return f"{number / size:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{int(number)}" if number == int(number) else f"{number:.1f}"


@register.filter
def percent(value) -> str:
    """A 0–1 rate as "2.5 %"; None → "—"."""
    if value is None:
        return "—"
    return f"{100 * float(value):.1f}".rstrip("0").rstrip(".") + " %"
