"""`manage.py monitor`: probe backends, read host and GPU metrics, roll up, alert, advise.

Runs until SIGTERM or Ctrl-C; `--once` runs one full round and exits. Several
monitors may run against one database: each interval's work is claimed by one.
"""

import json
import signal

from django.core.management.base import BaseCommand

from monitoring.models import State
from monitoring.worker import Monitor


class Command(BaseCommand):
    help = "Run the monitor (probes, host/GPU metrics, rollups, alerts, recommendations)."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true", help="one full round, then exit")
        parser.add_argument("--probe-interval", type=int, default=None,
                            help="seconds between probe rounds (default: the UI's setting, "
                                 "else TANGLAW_PROBE_INTERVAL_S, 30)")
        parser.add_argument("--host-interval", type=int, default=None,
                            help="seconds between host/GPU readings (default 5)")

    def handle(self, *args, once, probe_interval, host_interval, **options):
        for name, value in (("--probe-interval", probe_interval),
                            ("--host-interval", host_interval)):
            if value is not None and value < 1:
                self.stderr.write(f"{name} must be at least 1 second")
                raise SystemExit(2)
        if probe_interval is not None:
            State.objects.filter(key="probe_interval_s").delete()
        monitor = Monitor(host_interval=host_interval, fixed_probe_interval=probe_interval)
        if once:
            summary = monitor.round(force=True)
            self.stdout.write(json.dumps(summary, default=str))
            return

        def stop(signum, frame):
            monitor.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        monitor.run_forever()
