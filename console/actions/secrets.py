"""Secrets follow the address they were given for, not the field that holds it.

A stored API key or secret header was entered for one origin (scheme, host and port).
Re-pointing the backend, HTTP tool or MCP server at another origin would send it there,
so unless the same edit enters a new secret, the stored one is cleared — or kept, when
an admin says so explicitly. Either way the audit event of the change says what
happened to the secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from console.actions import Invalid
from console.audit import Actor
from console.choices import Role
from console.urlsafety import origin


@dataclass(frozen=True)
class SecretMove:
    """What an edit does to a stored secret: `clear` it, and the audit note (or "")."""

    clear: bool = False
    note: str = ""


def _show(url: str) -> str:
    parts = origin(url)
    return f"{parts[0]}://{parts[1]}:{parts[2]}" if parts else "an unreadable address"


def secret_move(actor: Actor, *, field: str, old_url: str, new_url: str, has_secret: bool,
                replaced: bool, keep: bool) -> SecretMove:
    """Decide for an edit that may move `field`'s secret from old_url to new_url.

    `replaced`: the edit itself enters (or clears) the secret, so nothing moves.
    `keep`: the editor asks to keep it for the new address; only an admin may.
    """
    if keep and actor.role != Role.ADMIN:
        raise Invalid({f"keep_{field}": [
            "only an admin may keep a stored secret when the address changes; enter it "
            "again instead"]})
    if not has_secret or replaced or origin(old_url) == origin(new_url):
        return SecretMove()
    moved = f"the address moved from {_show(old_url)} to {_show(new_url)}"
    if keep:
        return SecretMove(note=f"{field} kept for the new address by an admin: {moved}")
    return SecretMove(clear=True, note=f"{field} cleared: {moved}; enter it again for the "
                                       f"new address")
