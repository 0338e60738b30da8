"""`python -m console.web …`: Daphne, with an access log that redacts secrets.

Daphne's access log writes the whole request line, query string included, so a token a
client put in the URL (``?token=…``, ``?api_key=…``) would land in the log. This entry
point is Daphne's own command line with one change: the access log masks query values
whose names look secret and any value that looks like a key, the same rules the
application's log filter (console.redact) applies.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote

from daphne import cli
from daphne.access import AccessLogGenerator

from console.redact import MASK, SECRET_NAME, redact_text

# query parameter names that carry credentials in the wild (OAuth codes, signed URLs…)
QUERY_SECRET = re.compile(r"token|key|secret|pass|auth|sig|session|jwt|code|credential", re.I)


def redact_path(path: str) -> str:
    """The request path with secret-looking query values masked."""
    head, sep, query = path.partition("?")
    if not sep:
        return redact_text(unquote(path)) if "%" in path else redact_text(path)
    pairs = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        if value and (SECRET_NAME.search(key) or QUERY_SECRET.search(key)):
            value = MASK
        else:
            value = redact_text(value)
        pairs.append(f"{quote(key, safe='')}={quote(value, safe='*')}")
    return f"{redact_text(head)}?{'&'.join(pairs)}"


class RedactingAccessLog(AccessLogGenerator):
    def __call__(self, protocol, action, details):
        if "path" in details and isinstance(details["path"], str):
            details = {**details, "path": redact_path(details["path"])}
        return super().__call__(protocol, action, details)


def main() -> None:
    cli.AccessLogGenerator = RedactingAccessLog  # type: ignore[misc]  # cli builds it by name
    cli.CommandLineInterface.entrypoint()


if __name__ == "__main__":
    main()
