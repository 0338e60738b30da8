"""Daphne (Twisted), with an access log that redacts secrets and a shutdown that waits.

Daphne's access log writes the whole request line, query string included, so a token a
client put in the URL (``?token=…``, ``?api_key=…``) would land in the log; its access
log generator is swapped for one that passes the path through `redact_path`. Daphne
runs without ``--proxy-headers``.

On SIGTERM Daphne cancels every application and waits for them, in
`Server.kill_all_applications` — which has two faults, mended here: it raises KeyError
on a connection with no application (one whose finished request was already reaped,
about one stop in three in tests/console/test_asgi_servers.py), and then cancels
nothing and waits for nothing, so live chats lose their partial replies; and it stops
waiting when the first application ends with the cancellation (Django's HTTP handler
does), before the chats have saved.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from daphne import cli
from daphne.access import AccessLogGenerator
from daphne.server import Server
from twisted.internet import defer

from console.web import Listen, access_log_wanted, redact_path

logger = logging.getLogger("daphne.server")


class RedactingAccessLog(AccessLogGenerator):
    def __call__(self, protocol, action, details):
        if "path" in details and isinstance(details["path"], str):
            details = {**details, "path": redact_path(details["path"])}
        return super().__call__(protocol, action, details)


class WaitingServer(Server):
    def kill_all_applications(self):
        running = [details["application_instance"] for details in self.connections.values()
                   if details.get("application_instance") is not None
                   and not details["application_instance"].done()]
        for instance in running:
            instance.cancel()
        logger.info("Killed %i pending application instances", len(running))
        # every one is waited for, however the others end
        waited = defer.Deferred.fromFuture(asyncio.gather(*running, return_exceptions=True))
        waited.addErrback(lambda failure: None)
        return waited


class CommandLineInterface(cli.CommandLineInterface):
    server_class = WaitingServer


def serve(application: str, listen: Listen) -> int:
    where = (["--fd", str(listen.fd)] if listen.fd is not None
             else ["-b", listen.host, "-p", str(listen.port)])
    cli.AccessLogGenerator = RedactingAccessLog  # type: ignore[misc]  # cli builds it by name
    # verbosity 1 writes an access line per request to stdout and INFO logs; 0 only
    # warnings (TANGLAW_LOG_LEVEL)
    verbosity = ["-v", "1" if access_log_wanted() else "0"]
    CommandLineInterface().run([*verbosity, *where, application])
    if sys.version_info < (3, 11, 8):
        # Python 3.11.7 and older can crash (SIGSEGV) finalising the futures Twisted's
        # asyncio loop leaves behind (cpython#113566, fixed in 3.11.8): about one stop in
        # three here. Every application has ended by now, so end without finalising.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
