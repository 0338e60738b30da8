"""`make run`: prepare the database and data directory, then serve with the ASGI server
TANGLAW_ASGI_SERVER (or --server) names: Daphne by default, uvicorn or granian.

Ctrl-C (or SIGTERM) stops every process this command started.
"""

import errno
import os
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from console import web
from console.safeinput import digits


class Command(BaseCommand):
    help = "Migrate, create the admin on first run, and serve Tanglaw on HOST:PORT."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--no-monitor", action="store_true",
                            help="do not start the monitor beside the web server")
        parser.add_argument("--server", choices=list(web.SERVERS),
                            default=settings.TANGLAW_ASGI_SERVER,
                            help="the ASGI server (default: TANGLAW_ASGI_SERVER, else daphne)")

    def handle(self, *args, host, port, no_monitor=False, server=None, **options):
        server = server or settings.TANGLAW_ASGI_SERVER
        if not digits(str(port)) or not 0 < int(port) < 65536:
            raise CommandError(f"PORT={port} is not a port number (1-65535)")
        # bind before anything else: a port another program holds is a clear error now,
        # not a "running at" line followed by a web server that never started
        listener = self.listen(host, int(port))
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("ensure_admin")
        # children get their own session: a Ctrl-C reaches only this process, which sends
        # each child one SIGTERM (a second signal would make the server stop without
        # letting live chats save their partial replies)
        command = [sys.executable, "-m", "console.web", "--server", server]
        if listener.family.name in web.ADOPTS[server]:  # the server adopts our bound socket
            command += ["--fd", str(listener.fileno())]
            pass_fds: tuple[int, ...] = (listener.fileno(),)
        else:  # it binds its own: free the port just before it does
            listener.close()
            command += ["-b", host.strip("[]"), "-p", str(port)]
            pass_fds = ()
        children = [subprocess.Popen([*command, "console.asgi:application"], pass_fds=pass_fds,
                                     start_new_session=True)]
        if pass_fds:
            listener.close()  # the child holds it now
        display_host = f"[{host}]" if ":" in host else host
        self.stdout.write(self.style.SUCCESS(f"Tanglaw is running at http://{display_host}:{port}/"
                                             f"  ({server})"))
        self.stdout.write(f"Data directory: {settings.DATA_DIR}   (Ctrl-C stops)")
        sys.stdout.flush()
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
        code = self.supervise(children, stop)
        self.stdout.write("Tanglaw stopped.")
        if code not in (0, -signal.SIGTERM, -signal.SIGINT):
            sys.exit(code)

    def listen(self, host: str, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host.strip("[]"), port))
            sock.listen(256)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise CommandError(
                    f"port {port} on {host} is already in use (is Tanglaw or another server "
                    f"running there?). Start on another port: PORT={port + 1} make run"
                ) from None
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        sock.set_inheritable(True)
        return sock

    def supervise(self, children: list[subprocess.Popen], stop) -> int:
        """Wait for the children; when one ends on its own, stop the others, so the
        monitor never outlives a web server that failed."""
        # Ctrl-C and SIGTERM reach `stop` (the signal handlers), never this loop
        while all(child.poll() is None for child in children):
            time.sleep(0.2)
        stop(None, None)
        code = 0
        for child in children:
            code = child.wait() or code
        return code
