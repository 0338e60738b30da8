"""Every change goes through one function here; each writes its audit event.

Views, the JSON API, management commands and consumers call these, so all of
them validate, record and behave the same way.
"""


class Invalid(Exception):
    """Validation failed; `errors` maps field → [messages]."""

    def __init__(self, errors: dict[str, list[str]], form=None):
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors
        self.form = form


class Refused(Exception):
    """The action is not allowed in this state (e.g. demoting the last admin)."""
