"""Password rules beyond Django's own validators."""

from __future__ import annotations

from django.core.exceptions import ValidationError


class NotLikeUsernameValidator:
    """Refuses a password that contains the user name (or it reversed), or is contained
    in it, ignoring case, spaces and punctuation. Django's UserAttributeSimilarityValidator
    measures similarity as a ratio, so "oscar12345" passed for the user "oscar"."""

    min_length = 3

    @staticmethod
    def _letters(text: str) -> str:
        return "".join(c for c in text.casefold() if c.isalnum())

    def validate(self, password: str, user=None) -> None:
        if user is None:
            return
        name = self._letters(user.get_username() or "")
        word = self._letters(password)
        if len(name) < self.min_length or not word:
            return
        if name in word or name[::-1] in word or word in name:
            raise ValidationError("The password must not contain your user name.",
                                  code="password_too_similar")

    def get_help_text(self) -> str:
        return "Your password must not contain your user name."
