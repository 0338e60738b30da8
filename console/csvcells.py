"""CSV cells that a spreadsheet will not run as a formula.

Text that begins with ``=``, ``+``, ``-``, ``@`` (or a tab or carriage return, which
some spreadsheets skip before looking) is read as a formula by Excel, LibreOffice and
Google Sheets — an agent name, an actor or a model reply can start that way. Such a cell
gets a leading apostrophe, which spreadsheets show as text (OWASP's advice). Numbers
stay numbers.
"""

from __future__ import annotations

from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def safe_cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def safe_row(values: list[Any]) -> list[Any]:
    return [safe_cell(v) for v in values]
