"""A fake `pynvml` following nvidia-ml-py's API: devices can be added and can disappear."""

from __future__ import annotations

from types import SimpleNamespace

NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    def __init__(self, value: int = 999, text: str = "Unknown Error"):
        super().__init__(text)
        self.value = value


class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801 - the real name
    def __init__(self):
        super().__init__(12, "NVML Shared Library Not Found")


class FakeNvml:
    """`FakeNvml(devices=[...])` or `FakeNvml(driver=False)` (no NVIDIA driver at all)."""

    NVMLError = NVMLError
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU

    def __init__(self, devices: list[dict] | None = None, driver: bool = True):
        self.driver = driver
        self.devices = devices or []
        self.init_calls = 0
        self.gone: set[int] = set()

    def nvmlInit(self):  # noqa: N802 - pynvml's names
        self.init_calls += 1
        if not self.driver:
            raise NVMLError_LibraryNotFound()

    def nvmlSystemGetDriverVersion(self):  # noqa: N802
        return "550.54.15"

    def nvmlDeviceGetCount(self):  # noqa: N802
        return len([i for i in range(len(self.devices)) if i not in self.gone])

    def _device(self, handle):
        if handle in self.gone:
            raise NVMLError(15, "GPU is lost")
        return self.devices[handle]

    def nvmlDeviceGetHandleByIndex(self, index):  # noqa: N802
        live = [i for i in range(len(self.devices)) if i not in self.gone]
        return live[index]

    def nvmlDeviceGetName(self, handle):  # noqa: N802
        return self._device(handle)["name"].encode()

    def nvmlDeviceGetUUID(self, handle):  # noqa: N802
        return f"GPU-{handle:08d}"

    def nvmlDeviceGetMemoryInfo(self, handle):  # noqa: N802
        d = self._device(handle)
        return SimpleNamespace(total=d["total"], used=d["used"], free=d["total"] - d["used"])

    def nvmlDeviceGetUtilizationRates(self, handle):  # noqa: N802
        return SimpleNamespace(gpu=self._device(handle)["util"], memory=10)

    def nvmlDeviceGetTemperature(self, handle, sensor):  # noqa: N802
        return self._device(handle)["temp"]

    def nvmlDeviceGetPowerUsage(self, handle):  # noqa: N802
        if "power_mw" not in self._device(handle):
            raise NVMLError(3, "Not Supported")
        return self._device(handle)["power_mw"]

    def nvmlDeviceGetEnforcedPowerLimit(self, handle):  # noqa: N802
        return self._device(handle).get("limit_mw", 300000)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):  # noqa: N802
        return [SimpleNamespace(pid=p, usedGpuMemory=m)
                for p, m in self._device(handle).get("processes", [])]
