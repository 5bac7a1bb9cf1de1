"""Interface languages: gettext catalogs, chosen per request.

The interface text is translated; letters themselves stay in the language their authors
wrote. Catalogs are `letters/locale/LANG/LC_MESSAGES/messages.po`, read at start-up with
Babel (no compiled .mo files to build or commit); docs/translations.md says how to add a
language. A reader's language is, in order: the `lang` cookie set by the language links in
the footer, else the best match of their browser's `Accept-Language`, else English.

Messages made in Python for HTML pages are translated where they are made, with
`gettext()`: a request is in progress, so the current language is the reader's. Module
constants are marked with `N_()` (so `pybabel extract` finds them) and translated where
they are used. The JSON API, the badge and the other programs' addresses answer in English
whatever the reader's language (letters.web.language): programs read their codes, not
their prose, and their answers must not change with a browser's settings.
"""

from __future__ import annotations

import gettext as gettext_module
import io
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from jinja2 import Environment

DEFAULT = "en"
# Code -> the language's own name, as the switcher shows it.
LANGUAGES = {"en": "English", "es": "Español"}
COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 24 * 3600
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
# Languages whose four-digit numbers take no separator (CLDR's minimumGroupingDigits of 2,
# which Babel does not apply and browsers do: the page and live.js must write the same).
UNGROUPED_BELOW_10000 = {"es"}

_current: ContextVar[str] = ContextVar("language", default=DEFAULT)


def N_(message: str) -> str:  # the conventional name of the gettext marker
    """Mark a message for extraction; it is translated where it is used."""
    return message


@cache
def translations(language: str) -> gettext_module.NullTranslations:
    """The catalog of `language` (untranslated messages fall back to English)."""
    path = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if language == DEFAULT or not path.exists():
        return gettext_module.NullTranslations()
    with path.open("rb") as file:
        catalog = read_po(file, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)  # fuzzy entries are left out, as msgfmt does
    buffer.seek(0)
    return gettext_module.GNUTranslations(buffer)


def load() -> None:
    """Read every catalog now, so that a broken one stops the app at start-up."""
    for language in LANGUAGES:
        translations(language)


def current() -> str:
    """The language of the request being answered."""
    return _current.get()


@contextmanager
def using(language: str) -> Iterator[None]:
    """Translate into `language` for the duration of the block."""
    token = _current.set(language if language in LANGUAGES else DEFAULT)
    try:
        yield
    finally:
        _current.reset(token)


def gettext(message: str, **variables: Any) -> str:
    """`message` in the current language, its `%(name)s` placeholders filled if given."""
    text = translations(_current.get()).gettext(message)
    return text % variables if variables else text


def ngettext(singular: str, plural: str, n: int, **variables: Any) -> str:
    """The form of a message for `n` in the current language, placeholders filled if given."""
    text = translations(_current.get()).ngettext(singular, plural, n)
    return text % variables if variables else text


@cache
def _locale(language: str) -> Locale:
    return Locale.parse(language)


def format_number(number: int) -> str:
    """A count as the reader writes it: 1,234 in English, 1234 and 12.345 in Spanish."""
    language = _current.get()
    if language == DEFAULT:
        return f"{number:,}"  # the same as Babel's, 20 times faster
    if language in UNGROUPED_BELOW_10000 and -10_000 < number < 10_000:
        return str(number)
    return str(format_decimal(number, locale=_locale(language)))


def long_date(moment: date) -> str:
    """A day written out: 5 March 2025, 5 de marzo de 2025."""
    language = _current.get()
    if language == DEFAULT:
        return moment.strftime("%d %B %Y").lstrip("0")
    return str(format_date(moment, format="long", locale=_locale(language)))


def install(env: Environment) -> None:
    """Jinja2's i18n extension, reading the current language, and the filters that go with it.

    Newstyle gettext: `_()` and `{% trans %}` fill and escape their own placeholders.
    Trimmed: a `{% trans %}` block's line breaks and indentation are not part of its message.
    """
    env.add_extension("jinja2.ext.i18n")
    env.policies["ext.i18n.trimmed"] = True
    env.install_gettext_callables(  # type: ignore[attr-defined]
        gettext=gettext, ngettext=ngettext, newstyle=True
    )
    env.filters["number"] = format_number
    env.filters["long_date"] = long_date
    env.globals["language"] = current
    env.globals["languages"] = LANGUAGES


def negotiate(cookie: str | None, accept_language: str) -> str:
    """The language for a request: the reader's choice, else their browser's, else English."""
    if cookie in LANGUAGES:
        return cookie
    return _browser_language(accept_language)


@lru_cache(maxsize=1024)  # browsers send few distinct headers; a flood of others only evicts
def _browser_language(accept_language: str) -> str:
    for tag in _preferences(accept_language):
        if tag == "*":
            break
        language = tag.split("-", 1)[0].lower()
        if language in LANGUAGES:
            return language
    return DEFAULT


def _preferences(header: str) -> list[str]:
    """The tags of an Accept-Language header, most preferred first (q=0 means "not this")."""
    weighted = []
    for position, item in enumerate(header[:1000].split(",")[:20]):
        tag, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if tag and 0 < quality <= 1:
            weighted.append((-quality, position, tag))
    return [tag for _, _, tag in sorted(weighted)]
