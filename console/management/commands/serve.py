"""`make run`: prepare the database and data directory, then serve with Daphne.

Ctrl-C (or SIGTERM) stops every process this command started.
"""

import os
import signal
import subprocess
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Migrate, create the admin on first run, and serve Tanglaw on HOST:PORT."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--no-monitor", action="store_true",
                            help="do not start the monitor beside the web server")

    def handle(self, *args, host, port, no_monitor=False, **options):
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("ensure_admin")
        display_host = f"[{host}]" if ":" in host else host
        self.stdout.write(self.style.SUCCESS(f"Tanglaw is running at http://{display_host}:{port}/"))
        self.stdout.write(f"Data directory: {settings.DATA_DIR}   (Ctrl-C stops)")
        sys.stdout.flush()
        # children get their own session: a Ctrl-C reaches only this process, which sends
        # each child one SIGTERM (a second signal would make Daphne stop without letting
        # live chats save their partial replies)
        children = [
            subprocess.Popen([sys.executable, "-m", "daphne", "-b", host, "-p", str(port),
                              "--proxy-headers", "console.asgi:application"],
                             start_new_session=True),
        ]
        if not no_monitor:
            manage = settings.BASE_DIR / "manage.py"
            children.append(subprocess.Popen([sys.executable, str(manage), "monitor"],
                                             start_new_session=True))

        def stop(signum, frame):
            for child in children:
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        code = 0
        for child in children:
            try:
                code = child.wait(timeout=None) or code
            except KeyboardInterrupt:
                stop(None, None)
                code = child.wait()
        self.stdout.write("Tanglaw stopped.")
        if code not in (0, -signal.SIGTERM, -signal.SIGINT):
            sys.exit(code)
