"""`python -m console.web [--server NAME] (--fd N | -b HOST -p PORT) [APPLICATION]`.

NAME is daphne, uvicorn or granian (default: TANGLAW_ASGI_SERVER, else daphne).
"""

from __future__ import annotations

import argparse
import os
import sys

from django.utils.module_loading import import_string

from console.web import DEFAULT_SERVER, SERVERS, Listen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m console.web",
                                     description="Serve Tanglaw's ASGI application.")
    parser.add_argument("--server", type=str.lower, help=f"one of {', '.join(SERVERS)}",
                        default=(os.environ.get("TANGLAW_ASGI_SERVER") or DEFAULT_SERVER)
                        .strip().lower())
    parser.add_argument("-b", "--bind", default="127.0.0.1", help="address to listen on")
    parser.add_argument("-p", "--port", type=int, default=8000)
    parser.add_argument("--fd", type=int, help="serve on this inherited listening socket")
    parser.add_argument("application", nargs="?", default="console.asgi:application")
    args = parser.parse_args(argv)
    if args.server not in SERVERS:  # argparse does not check a default against choices
        parser.error(f"--server / TANGLAW_ASGI_SERVER: {args.server!r} is not one of "
                     f"{', '.join(SERVERS)}")
    serve = import_string(SERVERS[args.server])
    return serve(args.application, Listen(host=args.bind, port=args.port, fd=args.fd))


if __name__ == "__main__":
    sys.exit(main())
