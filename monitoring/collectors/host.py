"""Host metrics with psutil, never blocking: CPU % is measured since the previous call.

Also the memory and CPU of local backends' processes, found by the port they
listen on (only processes this user may inspect; others are skipped quietly).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from monitoring.collectors import Reading

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}  # noqa: S104 - names, not a bind


class HostCollector:
    def __init__(self, data_dir: Path | str):
        self.data_dir = str(data_dir)
        psutil.cpu_percent(interval=None)  # primes the counter; the first real read follows
        self._net = (time.monotonic(), psutil.net_io_counters())
        self._processes: dict[int, psutil.Process] = {}

    def collect(self) -> list[Reading]:
        memory, swap = psutil.virtual_memory(), psutil.swap_memory()
        disk = psutil.disk_usage(self.data_dir)
        now, net = time.monotonic(), psutil.net_io_counters()
        then, before = self._net
        self._net = (now, net)
        seconds = max(now - then, 1e-6)
        readings = [
            Reading("cpu_percent", "host", psutil.cpu_percent(interval=None)),
            Reading("memory_percent", "host", memory.percent),
            Reading("memory_used_bytes", "host", float(memory.total - memory.available)),
            Reading("memory_total_bytes", "host", float(memory.total)),
            Reading("swap_percent", "host", swap.percent),
            Reading("disk_percent", "host", disk.percent),
            Reading("disk_free_bytes", "host", float(disk.free)),
            Reading("net_sent_bytes_per_s", "host", (net.bytes_sent - before.bytes_sent) / seconds),
            Reading("net_recv_bytes_per_s", "host", (net.bytes_recv - before.bytes_recv) / seconds),
        ]
        if hasattr(os, "getloadavg"):
            readings.append(Reading("load_1m", "host", os.getloadavg()[0]))
        return readings

    def backend_processes(self, backends) -> list[Reading]:
        """RSS and CPU % of the process listening on each local backend's port."""
        wanted: dict[int, list[int]] = {}
        for backend in backends:
            parts = urlsplit(backend.base_url)
            if (parts.hostname or "") in LOCAL_HOSTS:
                port = parts.port or (443 if parts.scheme == "https" else 80)
                wanted.setdefault(port, []).append(backend.pk)
        if not wanted:
            return []
        try:
            connections = psutil.net_connections(kind="tcp")
        except (psutil.AccessDenied, OSError):
            return []
        readings = []
        for conn in connections:
            if conn.status != psutil.CONN_LISTEN or not conn.pid or not conn.laddr:
                continue
            for backend_id in wanted.pop(conn.laddr.port, []):
                process = self._process(conn.pid)
                if process is None:
                    continue
                try:
                    with process.oneshot():
                        rss, cpu = process.memory_info().rss, process.cpu_percent(None)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                scope = f"backend:{backend_id}"
                readings += [Reading("process_rss_bytes", scope, float(rss)),
                             Reading("process_cpu_percent", scope, cpu)]
        return readings

    def _process(self, pid: int) -> psutil.Process | None:
        process = self._processes.get(pid)
        if process is None:
            try:
                process = psutil.Process(pid)
                process.cpu_percent(None)  # prime
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                return None
            self._processes[pid] = process
        return process
