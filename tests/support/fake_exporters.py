# ruff: noqa: E501 - expositions are quoted as the exporters write them, a sample a line
"""Exporters that cannot run here (no NVIDIA GPU): dcgm-exporter and nvidia_gpu_exporter
answering with their documented metric names and labels (two GPUs each), and any
exposition a test sets, on one loopback server, one path per exporter."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

from tests.support.loopback import LoopbackServer

# dcgm-exporter's default counters (dcp-metrics-included.csv): labels gpu, UUID, device,
# modelName, Hostname; framebuffer in MiB, power in W
DCGM = """# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-1a2b",device="nvidia0",modelName="NVIDIA L4",Hostname="edge-1"} 87
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-3c4d",device="nvidia1",modelName="NVIDIA L4",Hostname="edge-1"} 12
# HELP DCGM_FI_DEV_FB_FREE Framebuffer memory free (in MiB).
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-1a2b",device="nvidia0",modelName="NVIDIA L4",Hostname="edge-1"} 1024
DCGM_FI_DEV_FB_FREE{gpu="1",UUID="GPU-3c4d",device="nvidia1",modelName="NVIDIA L4",Hostname="edge-1"} 20480
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-1a2b",device="nvidia0",modelName="NVIDIA L4",Hostname="edge-1"} 21504
DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-3c4d",device="nvidia1",modelName="NVIDIA L4",Hostname="edge-1"} 2048
# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{gpu="0",UUID="GPU-1a2b",device="nvidia0",modelName="NVIDIA L4",Hostname="edge-1"} 71
DCGM_FI_DEV_GPU_TEMP{gpu="1",UUID="GPU-3c4d",device="nvidia1",modelName="NVIDIA L4",Hostname="edge-1"} 44
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-1a2b",device="nvidia0",modelName="NVIDIA L4",Hostname="edge-1"} 68.5
DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-3c4d",device="nvidia1",modelName="NVIDIA L4",Hostname="edge-1"} 19.25
"""

# utkuozdemir/nvidia_gpu_exporter: nvidia-smi's fields per uuid; the index is a metric
NVIDIA_SMI = """# HELP nvidia_smi_gpu_info A metric with a constant '1' value labeled by gpu uuid, name, driver_model_current, driver_model_pending, vbios_version, driver_version.
# TYPE nvidia_smi_gpu_info gauge
nvidia_smi_gpu_info{driver_version="550.54",name="NVIDIA GeForce RTX 4060",uuid="5a8e-0001",vbios_version="95.07"} 1
nvidia_smi_gpu_info{driver_version="550.54",name="NVIDIA GeForce RTX 3060",uuid="5a8e-0002",vbios_version="94.06"} 1
# HELP nvidia_smi_index index
# TYPE nvidia_smi_index gauge
nvidia_smi_index{uuid="5a8e-0001"} 0
nvidia_smi_index{uuid="5a8e-0002"} 1
# HELP nvidia_smi_utilization_gpu_ratio utilization.gpu [%]
# TYPE nvidia_smi_utilization_gpu_ratio gauge
nvidia_smi_utilization_gpu_ratio{uuid="5a8e-0001"} 0.42
nvidia_smi_utilization_gpu_ratio{uuid="5a8e-0002"} 0.05
# HELP nvidia_smi_memory_used_bytes memory.used [MiB]
# TYPE nvidia_smi_memory_used_bytes gauge
nvidia_smi_memory_used_bytes{uuid="5a8e-0001"} 6.442450944e+09
nvidia_smi_memory_used_bytes{uuid="5a8e-0002"} 1.073741824e+09
# HELP nvidia_smi_memory_total_bytes memory.total [MiB]
# TYPE nvidia_smi_memory_total_bytes gauge
nvidia_smi_memory_total_bytes{uuid="5a8e-0001"} 8.589934592e+09
nvidia_smi_memory_total_bytes{uuid="5a8e-0002"} 1.2884901888e+10
# HELP nvidia_smi_temperature_gpu temperature.gpu
# TYPE nvidia_smi_temperature_gpu gauge
nvidia_smi_temperature_gpu{uuid="5a8e-0001"} 63
nvidia_smi_temperature_gpu{uuid="5a8e-0002"} 40
# HELP nvidia_smi_power_draw_watts power.draw [W]
# TYPE nvidia_smi_power_draw_watts gauge
nvidia_smi_power_draw_watts{uuid="5a8e-0001"} 95.3
nvidia_smi_power_draw_watts{uuid="5a8e-0002"} 14.1
"""


class FakeExporters(LoopbackServer):
    """`/dcgm` and `/nvidia` as above; `pages[path] = text` for any other; `down` paths
    answer 503; every request counted by path."""

    def __init__(self):
        self.pages: dict[str, str] = {"/dcgm": DCGM, "/nvidia": NVIDIA_SMI}
        self.down: set[str] = set()
        self.hits: dict[str, int] = {}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> FakeExporters:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.hits[self.path] = fake.hits.get(self.path, 0) + 1
                text = fake.pages.get(self.path)
                status = 503 if self.path in fake.down else 200 if text is not None else 404
                body = (text if status == 200 else "not here\n").encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.serve(Handler)
        return self
