"""NVIDIA GPU metrics through NVML (the nvidia-ml-py package's `pynvml`).

NVML is initialised once and device handles are cached; a device that stops
answering is dropped and the device list is read again on the next call. No
driver, no library or no devices is a normal state — `available` is False and
`reason` says why ("no GPU detected") — never an error.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from monitoring.collectors import Reading

log = logging.getLogger(__name__)


@dataclass
class Device:
    index: int
    handle: Any
    name: str
    uuid: str
    memory_total: int


class GpuCollector:
    def __init__(self, nvml: Any = None):
        self.nvml = nvml
        self.available = False
        self.reason = "not checked yet"
        self.driver = ""
        self.devices: list[Device] = []
        self._initialised = False

    def _load(self) -> Any:
        if self.nvml is None:
            try:
                import pynvml
            except ImportError:
                self.reason = "no GPU detected (nvidia-ml-py is not installed)"
                return None
            self.nvml = pynvml
        return self.nvml

    def start(self) -> bool:
        """Initialise NVML once. False (with `reason`) when there is nothing to read."""
        if self._initialised:
            return self.available
        nvml = self._load()
        if nvml is None:
            return False
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            self.reason = f"no GPU detected ({_text(exc)})"
            self._initialised = True
            return False
        self._initialised = True
        try:
            driver = nvml.nvmlSystemGetDriverVersion()
            self.driver = driver.decode() if isinstance(driver, bytes) else str(driver)
        except nvml.NVMLError:
            self.driver = ""
        self._scan()
        return self.available

    def _scan(self) -> None:
        nvml = self.nvml
        self.devices = []
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            self.available, self.reason = False, f"no GPU detected ({_text(exc)})"
            return
        for index in range(count):
            try:
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                self.devices.append(Device(
                    index, handle, _str(nvml.nvmlDeviceGetName(handle)),
                    _str(nvml.nvmlDeviceGetUUID(handle)),
                    int(nvml.nvmlDeviceGetMemoryInfo(handle).total)))
            except nvml.NVMLError as exc:
                log.warning("GPU %s is not answering: %s", index, _text(exc))
        self.available = bool(self.devices)
        self.reason = "" if self.devices else "no GPU detected (the driver reports no devices)"

    def collect(self) -> list[Reading]:
        if not self.start():
            return []
        nvml, readings, lost = self.nvml, [], False
        for device in self.devices:
            scope = f"gpu:{device.index}"
            try:
                util = nvml.nvmlDeviceGetUtilizationRates(device.handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(device.handle)
                temperature = nvml.nvmlDeviceGetTemperature(device.handle,
                                                            nvml.NVML_TEMPERATURE_GPU)
            except nvml.NVMLError as exc:
                log.warning("GPU %s (%s) stopped answering: %s", device.index, device.name,
                            _text(exc))
                lost = True
                continue
            readings += [
                Reading("gpu_utilization_percent", scope, float(util.gpu)),
                Reading("gpu_memory_used_bytes", scope, float(memory.used)),
                Reading("gpu_memory_total_bytes", scope, float(memory.total)),
                Reading("gpu_memory_percent", scope,
                        100.0 * memory.used / memory.total if memory.total else 0.0),
                Reading("gpu_temperature_c", scope, float(temperature)),
            ]
            for metric, call in (("gpu_power_w", "nvmlDeviceGetPowerUsage"),
                                 ("gpu_power_limit_w", "nvmlDeviceGetEnforcedPowerLimit")):
                with contextlib.suppress(nvml.NVMLError):  # not every board reports power
                    readings.append(Reading(metric, scope,
                                            getattr(nvml, call)(device.handle) / 1000.0))
        if lost:
            self._scan()
        return readings

    def processes(self) -> list[dict[str, Any]]:
        """Per-process GPU memory (read at a slower interval)."""
        if not self.start():
            return []
        out = []
        for device in self.devices:
            try:
                running = self.nvml.nvmlDeviceGetComputeRunningProcesses(device.handle)
            except self.nvml.NVMLError:
                continue
            for process in running:
                out.append({"gpu": device.index, "pid": int(process.pid),
                            "used_bytes": int(getattr(process, "usedGpuMemory", 0) or 0)})
        return out

    def describe(self) -> list[dict[str, Any]]:
        return [{"index": d.index, "name": d.name, "uuid": d.uuid,
                 "memory_total_bytes": d.memory_total} for d in self.devices]


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return "the NVIDIA driver is not installed" if "Not Found" in text else text
