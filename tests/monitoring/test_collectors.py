"""Host metrics (psutil, non-blocking) and GPU metrics through a fake NVML."""

import time

import pytest

from monitoring.collectors.gpu import GpuCollector
from monitoring.collectors.host import HostCollector
from tests.support.fake_engine import FakeEngine
from tests.support.fake_nvml import FakeNvml

GB = 1024 ** 3


def gpus():
    return [{"name": "NVIDIA L4", "total": 24 * GB, "used": 6 * GB, "util": 37, "temp": 61,
             "power_mw": 48000, "processes": [(4242, 5 * GB)]},
            {"name": "NVIDIA RTX A2000", "total": 12 * GB, "used": 1 * GB, "util": 3,
             "temp": 44}]


def by_name(readings):
    return {(r.metric, r.scope): r.value for r in readings}


def test_host_readings_do_not_block(tmp_path):
    collector = HostCollector(tmp_path)
    started = time.perf_counter()
    readings = by_name(collector.collect())
    assert time.perf_counter() - started < 0.5  # cpu_percent(interval=None), never a sleep
    for metric in ("cpu_percent", "memory_percent", "memory_total_bytes", "swap_percent",
                   "disk_percent", "disk_free_bytes", "net_sent_bytes_per_s", "load_1m"):
        assert (metric, "host") in readings, metric
    assert 0 <= readings[("memory_percent", "host")] <= 100
    assert readings[("memory_total_bytes", "host")] > 0


@pytest.mark.django_db
def test_the_process_behind_a_local_backend_is_found_by_its_port(tmp_path):
    from console.models import Backend

    with FakeEngine("vllm") as engine:  # served by this test process
        backend = Backend.objects.create(name="local", kind="vllm", base_url=engine.url)
        remote = Backend.objects.create(name="far", kind="vllm", base_url="http://10.9.9.9:8000")
        readings = by_name(HostCollector(tmp_path).backend_processes([backend, remote]))
    assert readings[("process_rss_bytes", f"backend:{backend.pk}")] > 10 * 1024 ** 2
    assert ("process_cpu_percent", f"backend:{backend.pk}") in readings
    assert not any(scope == f"backend:{remote.pk}" for _, scope in readings)


def test_two_gpus_then_one_disappears():
    nvml = FakeNvml(gpus())
    collector = GpuCollector(nvml)
    readings = by_name(collector.collect())
    assert collector.available and collector.driver == "550.54.15"
    assert [d["name"] for d in collector.describe()] == ["NVIDIA L4", "NVIDIA RTX A2000"]
    assert readings[("gpu_utilization_percent", "gpu:0")] == 37
    assert readings[("gpu_memory_used_bytes", "gpu:0")] == 6 * GB
    assert readings[("gpu_memory_percent", "gpu:0")] == 25.0
    assert readings[("gpu_temperature_c", "gpu:1")] == 44
    assert readings[("gpu_power_w", "gpu:0")] == 48.0
    assert ("gpu_power_w", "gpu:1") not in readings  # a board without power readings
    assert collector.processes() == [{"gpu": 0, "pid": 4242, "used_bytes": 5 * GB}]

    nvml.gone.add(1)  # fell off the bus
    after = by_name(collector.collect())
    assert ("gpu_utilization_percent", "gpu:0") in after
    assert not any(scope == "gpu:1" for _, scope in after)
    assert [d["index"] for d in collector.describe()] == [0]  # the list was read again
    assert nvml.init_calls == 1  # NVML initialised once


def test_no_driver_is_a_normal_state():
    nvml = FakeNvml(driver=False)
    collector = GpuCollector(nvml)
    assert collector.collect() == [] and collector.collect() == []
    assert not collector.available
    assert collector.reason == "no GPU detected (the NVIDIA driver is not installed)"
    assert nvml.init_calls == 1 and collector.processes() == []


def test_the_real_pynvml_on_this_machine_degrades_gracefully():
    collector = GpuCollector()  # nvidia-ml-py's pynvml; this machine may have no GPU
    readings = collector.collect()
    if collector.available:
        assert any(r.metric == "gpu_utilization_percent" for r in readings)
    else:
        assert readings == [] and collector.reason.startswith("no GPU detected")
