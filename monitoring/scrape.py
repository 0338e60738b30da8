"""Reading a fleet host's exporters: the Prometheus text format parsed by
`prometheus_client`'s parser (never by hand), turned into the same readings the local
host and GPUs give, with the host's scopes: `host:ID` and `gpu:ID/INDEX`.

- node_exporter: CPU % from `node_cpu_seconds_total` between two scrapes, memory and
  swap, the root filesystem, network bytes per second, load.
- a Jetson (which DCGM does not support): its node exporter, and its GPU from tegrastats
  written to the node exporter's textfile collector as `tegrastats_gpu_utilization_percent`,
  `tegrastats_gpu_temperature_celsius` and `tegrastats_power_watts`.
- dcgm-exporter: `DCGM_FI_DEV_GPU_UTIL`, `DCGM_FI_DEV_FB_USED` / `_FREE` (MiB),
  `DCGM_FI_DEV_GPU_TEMP`, `DCGM_FI_DEV_POWER_USAGE`, per `gpu` label.
- nvidia_gpu_exporter: `nvidia_smi_*` per `uuid`, the index from `nvidia_smi_index`.
- any Prometheus endpoint: scraped for its health (families count), no readings.

Counters need the previous scrape: `Previous` keeps them (the monitor stores them in
State, so whichever monitor scrapes next continues the rate).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from monitoring.collectors import Reading

MAX_BODY = 8 * 1024 * 1024  # an exporter's answer larger than this is refused
TIMEOUT_S = 5.0
IDLE_MODES = {"idle", "iowait"}
SKIPPED_FS = {"tmpfs", "devtmpfs", "overlay", "squashfs", "ramfs", "nsfs", "proc", "sysfs"}
MIB = 1024 * 1024
VIRTUAL_NICS = ("lo", "veth", "docker", "br-", "virbr", "cni", "flannel", "cali", "tun")
LONGEST_GAP_S = 900  # a rate over a longer gap (after an outage) is not "now"


@dataclass
class Scraped:
    """One target's scrape: its readings, what to remember for the next one, a summary of
    what it returned (for *Test* and the host page), or why it failed."""

    ok: bool
    readings: list[Reading] = field(default_factory=list)
    counters: dict[str, float] = field(default_factory=dict)
    families: int = 0
    latest: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    duration_ms: float = 0.0
    gpus: list[dict[str, Any]] = field(default_factory=list)


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) of every sample in an exposition; ValueError when it is not
    the Prometheus text format."""
    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.append((sample.name, sample.labels, float(sample.value)))
    return out


def node(found: list[tuple[str, dict[str, str], float]], scope: str,
         previous: dict[str, float], now: float) -> tuple[list[Reading], dict[str, float],
                                                          dict[str, Any]]:
    """Host readings from node_exporter's names; counters for the next scrape."""
    values: dict[str, float] = {}
    cpu_idle = cpu_total = 0.0
    rx = tx = 0.0
    disks: list[tuple[float, float, str]] = []  # (size, avail, mountpoint)
    sizes: dict[str, float] = {}
    avails: dict[str, float] = {}
    cpus: set[str] = set()
    for name, labels, value in found:
        if not math.isfinite(value):
            continue
        if name == "node_cpu_seconds_total":
            cpu_total += value
            cpus.add(labels.get("cpu", ""))
            if labels.get("mode") in IDLE_MODES:
                cpu_idle += value
        elif name in ("node_network_receive_bytes_total", "node_network_transmit_bytes_total"):
            if labels.get("device", "").startswith(VIRTUAL_NICS):
                continue  # traffic inside the box, and devices that come and go
            if name.startswith("node_network_receive"):
                rx += value
            else:
                tx += value
        elif name in ("node_filesystem_size_bytes", "node_filesystem_avail_bytes"):
            if labels.get("fstype") in SKIPPED_FS:
                continue
            key = labels.get("mountpoint", "")
            (sizes if name.endswith("size_bytes") else avails)[key] = value
        else:
            values[name] = value
    for mount, size in sizes.items():
        if mount in avails and size > 0:
            disks.append((size, avails[mount], mount))
    readings: list[Reading] = []
    latest: dict[str, Any] = {}
    total, available = values.get("node_memory_MemTotal_bytes"), values.get(
        "node_memory_MemAvailable_bytes")
    if total and available is not None:
        used = total - available
        readings += [Reading("memory_percent", scope, 100.0 * used / total),
                     Reading("memory_used_bytes", scope, used),
                     Reading("memory_total_bytes", scope, total)]
        latest.update(memory_percent=round(100.0 * used / total, 1), memory_total_bytes=total)
    swap, swap_free = values.get("node_memory_SwapTotal_bytes"), values.get(
        "node_memory_SwapFree_bytes")
    if swap and swap_free is not None:
        readings.append(Reading("swap_percent", scope, 100.0 * (swap - swap_free) / swap))
    if disks:
        root = next((d for d in disks if d[2] == "/"), max(disks))
        size, avail, _ = root
        readings += [Reading("disk_percent", scope, 100.0 * (size - avail) / size),
                     Reading("disk_free_bytes", scope, avail)]
        latest.update(disk_percent=round(100.0 * (size - avail) / size, 1))
    if "node_load1" in values:
        readings.append(Reading("load_1m", scope, values["node_load1"]))
        latest["load_1m"] = values["node_load1"]
    counters = {"t": now, "cpu_idle": cpu_idle, "cpu_total": cpu_total, "rx": rx, "tx": tx}
    if cpus:
        latest["cpus"] = len(cpus)
    seconds = now - previous.get("t", now)
    if previous and 0 < seconds <= LONGEST_GAP_S:
        busy_delta = cpu_total - previous.get("cpu_total", 0.0)
        idle_delta = cpu_idle - previous.get("cpu_idle", 0.0)
        if busy_delta > 0 and idle_delta >= 0:  # counters only grow; a reboot starts over
            cpu = max(0.0, min(100.0, 100.0 * (1 - idle_delta / busy_delta)))
            readings.append(Reading("cpu_percent", scope, cpu))
            latest["cpu_percent"] = round(cpu, 1)
        for metric, key, current in (("net_recv_bytes_per_s", "rx", rx),
                                     ("net_sent_bytes_per_s", "tx", tx)):
            grown = current - previous.get(key, 0.0)
            if grown >= 0:
                readings.append(Reading(metric, scope, grown / seconds))
    return readings, counters, latest


MOST_GPUS = 64  # per target: more is not an exporter of one machine
GPU_INDEX = re.compile(r"\d{1,4}")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _gpu(readings: list[Reading], gpus: list[dict[str, Any]], host_id: int, index: str,
         name: str, util: float | None, used: float | None, total: float | None,
         temperature: float | None, power: float | None) -> None:
    """One GPU's readings and summary; an index that is not a small number, or one GPU
    too many, is left out (its scope must fit, and an answer is one machine's)."""
    if not GPU_INDEX.fullmatch(index) or len(gpus) >= MOST_GPUS:
        return
    util, used, total = _finite(util), _finite(used), _finite(total)
    temperature, power = _finite(temperature), _finite(power)
    scope = f"gpu:{host_id}/{index}"
    for metric, value in (("gpu_utilization_percent", util), ("gpu_memory_used_bytes", used),
                          ("gpu_memory_total_bytes", total), ("gpu_temperature_c", temperature),
                          ("gpu_power_w", power)):
        if value is not None and math.isfinite(value):
            readings.append(Reading(metric, scope, value))
    if used is not None and total:
        readings.append(Reading("gpu_memory_percent", scope, 100.0 * used / total))
    gpus.append({"index": index, "name": name[:100], "scope": scope,
                 "utilization_percent": util,
                 "memory_used_bytes": used, "memory_total_bytes": total,
                 "temperature_c": temperature, "power_w": power})


def dcgm(found: list[tuple[str, dict[str, str], float]], host_id: int
         ) -> tuple[list[Reading], list[dict[str, Any]]]:
    by_gpu: dict[str, dict[str, Any]] = {}
    for name, labels, value in found:
        if not name.startswith("DCGM_FI_DEV_") or "gpu" not in labels:
            continue
        gpu = by_gpu.setdefault(labels["gpu"], {"name": labels.get("modelName", "")})
        gpu[name] = value
    readings: list[Reading] = []
    gpus: list[dict[str, Any]] = []
    for index, gpu in sorted(by_gpu.items(), key=lambda item: item[0].zfill(4)):
        used, free = gpu.get("DCGM_FI_DEV_FB_USED"), gpu.get("DCGM_FI_DEV_FB_FREE")
        _gpu(readings, gpus, host_id, index, gpu["name"], gpu.get("DCGM_FI_DEV_GPU_UTIL"),
             used * MIB if used is not None else None,
             (used + free) * MIB if used is not None and free is not None else None,
             gpu.get("DCGM_FI_DEV_GPU_TEMP"), gpu.get("DCGM_FI_DEV_POWER_USAGE"))
    return readings, gpus


def nvidia_smi(found: list[tuple[str, dict[str, str], float]], host_id: int
               ) -> tuple[list[Reading], list[dict[str, Any]]]:
    by_uuid: dict[str, dict[str, Any]] = {}
    for name, labels, value in found:
        if not name.startswith("nvidia_smi_") or "uuid" not in labels:
            continue
        gpu = by_uuid.setdefault(labels["uuid"], {})
        gpu[name] = value
        if name == "nvidia_smi_gpu_info":
            gpu["name"] = labels.get("name", "")
    readings: list[Reading] = []
    gpus: list[dict[str, Any]] = []
    ordered = sorted(by_uuid.items(), key=lambda item: item[1].get("nvidia_smi_index", 1e9))
    for position, (_, gpu) in enumerate(ordered):
        number = gpu.get("nvidia_smi_index")
        index = str(int(number)) if number is not None and math.isfinite(number) \
            and 0 <= number < 10_000 else str(position)
        ratio = gpu.get("nvidia_smi_utilization_gpu_ratio")
        _gpu(readings, gpus, host_id, index, gpu.get("name", ""),
             ratio * 100 if ratio is not None else None, gpu.get("nvidia_smi_memory_used_bytes"),
             gpu.get("nvidia_smi_memory_total_bytes"), gpu.get("nvidia_smi_temperature_gpu"),
             gpu.get("nvidia_smi_power_draw_watts"))
    return readings, gpus


# the series each kind's readings come from: only their lines reach the parser (a node
# exporter's answer is mostly series Tanglaw does not chart; the parser is pure Python,
# and parsing all of 200 hosts' answers held the monitor's event loop for ~100 ms)
WANTED = {"node_exporter": ("node_cpu_seconds_total", "node_memory_MemTotal_bytes",
                            "node_memory_MemAvailable_bytes", "node_memory_SwapTotal_bytes",
                            "node_memory_SwapFree_bytes", "node_filesystem_size_bytes",
                            "node_filesystem_avail_bytes", "node_network_receive_bytes_total",
                            "node_network_transmit_bytes_total", "node_load1"),
          "dcgm_exporter": ("DCGM_FI_DEV_",), "nvidia_gpu_exporter": ("nvidia_smi_",)}
# a Jetson: the node exporter's host series, and the GPU from tegrastats written to its
# textfile collector under these names (the README has the script)
TEGRASTATS = {"tegrastats_gpu_utilization_percent": "gpu_utilization_percent",
              "tegrastats_gpu_temperature_celsius": "gpu_temperature_c",
              "tegrastats_power_watts": "gpu_power_w"}
WANTED["jetson"] = (*WANTED["node_exporter"], "tegrastats_")


def family_count(text: str) -> int:
    """How many metric families an answer declares (its `# TYPE` lines), or, without
    them, how many distinct names its samples have."""
    typed = sum(1 for line in text.splitlines() if line.startswith("# TYPE "))
    if typed:
        return typed
    return len({line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines()
                if line and not line.startswith("#")})


def kept_lines(kind: str, text: str) -> str:
    """The answer cut down to the series `kind` reads (and their comments)."""
    prefixes = WANTED.get(kind)
    if prefixes is None:
        return text
    out = [line for line in text.splitlines()
           if line.startswith(prefixes) or (line.startswith("# ") and line[7:].startswith(
               prefixes))]
    return "\n".join(out) + "\n"


def tegrastats(found: list[tuple[str, dict[str, str], float]], host_id: int
               ) -> tuple[list[Reading], list[dict[str, Any]]]:
    """A Jetson's integrated GPU (it shares the host's memory: no GPU memory of its own)."""
    values = {name: value for name, _, value in found if name in TEGRASTATS}
    if not values:
        return [], []
    readings: list[Reading] = []
    gpus: list[dict[str, Any]] = []
    _gpu(readings, gpus, host_id, "0", "Jetson GPU",
         values.get("tegrastats_gpu_utilization_percent"), None, None,
         values.get("tegrastats_gpu_temperature_celsius"), values.get("tegrastats_power_watts"))
    return readings, gpus


def interpret(kind: str, text: str, host_id: int, previous: dict[str, float],
              now: float | None = None) -> Scraped:
    """A target's answer as readings. A body that is not the text format fails."""
    now = time.time() if now is None else now
    families = family_count(text)
    try:
        found = samples(kept_lines(kind, text))
        if not found:  # nothing of what it should have: is it the text format at all?
            everything = samples(text)
            found = everything if kind not in WANTED else []
    except (ValueError, TypeError, IndexError) as exc:
        return Scraped(False, error=f"not the Prometheus text format: {exc}"[:300])
    out = Scraped(True, families=families)
    scope = f"host:{host_id}"
    if kind == "jetson":
        out.readings, out.gpus = tegrastats(found, host_id)
    if kind in ("node_exporter", "jetson"):
        readings, out.counters, out.latest = node(found, scope, previous, now)
        out.readings += readings
        if not any(name.startswith("node_") for name, _, _ in found):
            return Scraped(False, families=families, error="no node_exporter metrics "
                           "(node_…) in the answer: is this the node exporter?")
    elif kind == "dcgm_exporter":
        out.readings, out.gpus = dcgm(found, host_id)
        if not out.gpus:
            return Scraped(False, families=families, error="no DCGM_FI_DEV_… metrics with "
                           "a gpu label: is this dcgm-exporter?")
    elif kind == "nvidia_gpu_exporter":
        out.readings, out.gpus = nvidia_smi(found, host_id)
        if not out.gpus:
            return Scraped(False, families=families, error="no nvidia_smi_… metrics with a "
                           "uuid label: is this nvidia_gpu_exporter?")
    if out.gpus:
        out.latest["gpus"] = out.gpus
    return out


async def fetch(client: Any, url: str) -> tuple[str | None, str, float]:
    """(body, error, milliseconds) of one GET, bounded in time and size."""
    import httpx

    started = time.monotonic()
    try:
        async with asyncio.timeout(TIMEOUT_S):
            async with client.stream("GET", url, headers={
                    "Accept": "text/plain;version=0.0.4"}) as response:
                if response.status_code != 200:
                    return None, f"HTTP {response.status_code} from {url}"[:300], \
                        _ms(started)
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_BODY:
                        return None, f"the answer is larger than {MAX_BODY // MIB} MiB", \
                            _ms(started)
                    chunks.append(chunk)
    except TimeoutError:
        return None, f"no answer in {TIMEOUT_S:g} s", _ms(started)
    except httpx.ConnectError as exc:
        reason = str(exc) or "connection refused"
        if "refused" in reason.lower() or "errno 111" in reason.lower():
            reason = "connection refused: is the exporter running?"
        return None, f"cannot reach {url}: {reason}"[:300], _ms(started)
    except (httpx.HTTPError, OSError, ValueError) as exc:
        return None, f"cannot reach {url}: {exc or type(exc).__name__}"[:300], _ms(started)
    return b"".join(chunks).decode("utf-8", "replace"), "", _ms(started)


def _ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


async def scrape(client: Any, kind: str, url: str, host_id: int,
                 previous: dict[str, float]) -> Scraped:
    body, error, ms = await fetch(client, url)
    if body is None:
        return Scraped(False, error=error, duration_ms=ms)
    try:
        if len(body) > 64 * 1024:  # the parser is pure Python: a large body off the loop
            result = await asyncio.to_thread(interpret, kind, body, host_id, previous)
        else:
            result = interpret(kind, body, host_id, previous)
    except Exception as exc:  # noqa: BLE001 - one odd answer is that target's failure
        result = Scraped(False, error=f"could not read the answer: {type(exc).__name__}: "
                                      f"{exc}"[:300])
    result.duration_ms = ms
    return result
