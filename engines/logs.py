"""Where a managed engine's output goes, and reading its tail.

Each engine writes stdout and stderr to `<data dir>/engines/<id>/engine.log`, opened
for appending at every start after a header line; a log over ROTATE_BYTES is moved to
`engine.log.1` first (one old file kept), so a chatty engine never fills the disk.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import IO

from django.conf import settings
from django.http import FileResponse
from django.utils import timezone

ROTATE_BYTES = 8 * 1024 * 1024
TAIL_BYTES = 256 * 1024


def workdir(engine_id: int) -> Path:
    path = Path(settings.DATA_DIR) / "engines" / str(engine_id)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def log_path(engine_id: int) -> Path:
    return Path(settings.DATA_DIR) / "engines" / str(engine_id) / "engine.log"


def open_for_start(engine_id: int, argv: list[str]) -> IO[bytes]:
    path = workdir(engine_id) / "engine.log"
    if path.exists() and path.stat().st_size > ROTATE_BYTES:
        path.replace(path.with_name("engine.log.1"))
    handle = path.open("ab")
    handle.write(f"--- {timezone.now():%Y-%m-%d %H:%M:%S} UTC: {shlex.join(argv)}\n".encode())
    handle.flush()
    return handle


def tail(engine_id: int, lines: int = 200) -> list[str]:
    """The last `lines` lines of the log (from its last 256 KiB), or [] when there is none."""
    path = log_path(engine_id)
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - TAIL_BYTES))
            data = handle.read()
    except FileNotFoundError:
        return []
    text = data.decode("utf-8", "replace").replace("\r\n", "\n")
    rows = text.split("\n")
    if size > TAIL_BYTES:
        rows = rows[1:]  # the first row is cut
    if rows and rows[-1] == "":
        rows.pop()
    return rows[-lines:]


def download(engine) -> FileResponse | None:
    """The whole log as an attachment, or None when the engine never wrote one."""
    path = log_path(engine.pk)
    if not path.exists():
        return None
    return FileResponse(path.open("rb"), as_attachment=True, content_type="text/plain",
                        filename=f"{engine.name}-engine.log")


def last_line(engine_id: int) -> str:
    """The last line with words in it: what an engine said before it died."""
    for row in reversed(tail(engine_id, 50)):
        if row.strip() and not row.startswith("--- "):
            return row.strip()[:300]
    return ""
