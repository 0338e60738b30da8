"""Before a pull or a load: will the model fit in the memory free now?

The need comes from console.sizing (weights × overhead, plus the KV cache when
the architecture is known); what is free comes from the monitor's newest
readings (RAM, and the freest GPU). Warns when it will not fit, or when it
would push host memory over the memory alert's threshold, and suggests the
quantization that fits (Q8_0 → Q5_K_M → Q4_K_M: best quality first).
"""

from __future__ import annotations

from typing import Any

from console import sizing

DEFAULT_THRESHOLD = 85.0


def _readings(backend_id: int | None) -> dict[str, Any]:
    """What is free on the host the backend runs on: this machine, or its fleet host."""
    try:
        from monitoring import fleet, queries
        from monitoring.models import AlertRule
    except ImportError:  # the console runs without the monitoring app too
        return {}
    host = fleet.host_scopes().get(backend_id, "host") if backend_id else "host"
    rule = AlertRule.objects.filter(metric="memory_percent", scope="host",
                                    enabled=True).order_by("threshold").first()
    return {**queries.memory(host=host),
            "threshold": rule.threshold if rule else DEFAULT_THRESHOLD}


def warnings(model: str, need_bytes: float | None, parameter_size: str = "",
             backend_id: int | None = None) -> list[str]:
    """Plain-language warnings (empty: it fits, or nothing is known to say otherwise),
    against the memory of the host `backend_id` runs on."""
    if not need_bytes:
        return []
    now = _readings(backend_id)
    total, used = now.get("total"), now.get("used")
    if not total or used is None:
        return []
    free_ram = total - used
    room = max(free_ram, now.get("free_vram") or 0)
    out = []
    gb = 1e9
    if need_bytes > room:
        out.append(f"{model} needs about {need_bytes / gb:.1f} GB but only {room / gb:.1f} GB "
                   f"is free now: it may not load.")
        params = sizing.parameters(parameter_size)
        fit = sizing.best_fit(params, room) if params else None
        if fit:
            out.append(f"{fit[0]} of the same model would need about {fit[1] / gb:.1f} GB "
                       f"and fits.")
    elif (now.get("free_vram") or 0) < need_bytes:  # it lands in RAM
        after = 100 * (used + need_bytes) / total
        if after > now["threshold"]:
            out.append(f"Loading {model} takes host memory to about {after:.0f} %, over the "
                       f"{now['threshold']:.0f} % alert threshold.")
    return out
