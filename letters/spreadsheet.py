"""CSV for spreadsheets: every file the site offers for download is written here.

A cell a spreadsheet would read as a formula (=, +, -, @, their fullwidth forms, which
some spreadsheets fold to ASCII, a pipe for old DDE links, or a tab or line break before
any of them) is prefixed with an apostrophe, so opening an export never runs what a
signer typed as their name.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable

FORMULA_STARTS = frozenset("=+-@|%\t\r\n\uff1d\uff0b\uff0d\uff20\uff5c\uff05")


def cell(value: object) -> str:
    """The value as a cell that spreadsheets will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in FORMULA_STARTS else text


def to_csv(rows: Iterable[Iterable[object]]) -> str:
    """Rows as CSV text (CRLF line ends, as RFC 4180 and spreadsheets expect)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows([cell(v) for v in row] for row in rows)
    return buffer.getvalue()
