"""Every change goes through one function here; each writes its audit event.

Views, the JSON API, management commands and consumers call these, so all of
them validate, record and behave the same way.
"""


def form_errors(form, rename: dict[str, str] | None = None) -> dict[str, list[str]]:
    """A bound form's errors as {field: [messages]}, fields renamed to their API names."""
    rename = rename or {}
    return {rename.get(field, field): [e["message"] for e in errs]
            for field, errs in form.errors.get_json_data().items()}


class Invalid(Exception):
    """Validation failed; `errors` maps field → [messages]."""

    def __init__(self, errors: dict[str, list[str]], form=None):
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors
        self.form = form

    @property
    def messages(self) -> str:
        """Every message, without the field names (for a page's flash message)."""
        return " ".join(m for ms in self.errors.values() for m in ms)


class Refused(Exception):
    """The action is not allowed in this state (e.g. demoting the last admin)."""
