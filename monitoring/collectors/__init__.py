"""What the monitor reads each round: the host (psutil), NVIDIA GPUs (NVML), backends."""

from __future__ import annotations

from typing import NamedTuple


class Reading(NamedTuple):
    metric: str
    scope: str
    value: float
