"""Validation of what signers type, shared by the HTML form and the JSON API."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from letters.domains import MAX_ADDRESS_LENGTH, Address, AddressError, parse_address
from letters.i18n import N_, gettext
from letters.ratelimit import ip_key
from letters.settings import Settings
from letters.tokens import Signer

MAX_NAME = 100
MAX_TITLE = 120

# Bidirectional overrides and isolates can make a name display as something else
# ("Trojan Source"); zero-width joiners are kept because some scripts need them.
BIDI_CONTROLS = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
ALLOWED_FORMAT_CHARS = {"\u200c", "\u200d"}


class FieldError(ValueError):
    """A bad value in one field; `message` is written for the person who typed it.

    Messages are translated where they are made (i18n.gettext): in the reader's language
    on a page, in English in the JSON API.
    """

    def __init__(self, field: str, message: str, code: str = "invalid_field") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code


def clean_text(value: Any, field: str, label: str, max_length: int) -> str:
    """NFC-normalize, trim and collapse whitespace; refuse control and bidi characters.

    `label` names the field in messages: an English text marked with N_().
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FieldError(field, gettext("%(label)s must be text.", label=gettext(label)))
    if len(value) > max_length * 4:
        raise _too_long(field, label, max_length)
    text = " ".join(unicodedata.normalize("NFC", value).split())
    for char in text:
        category = unicodedata.category(char)
        if char in BIDI_CONTROLS or (
            category in ("Cc", "Cs", "Co", "Cn", "Cf") and char not in ALLOWED_FORMAT_CHARS
        ):
            message = gettext(
                "%(label)s contains an invisible or control character.", label=gettext(label)
            )
            raise FieldError(field, message)
    if len(text) > max_length:
        raise _too_long(field, label, max_length)
    return text


def _too_long(field: str, label: str, max_length: int) -> FieldError:
    message = gettext(
        "%(label)s must be at most %(max)s characters.", label=gettext(label), max=max_length
    )
    return FieldError(field, message)


def parse_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.lower() in ("1", "true", "on", "yes"):
        return True
    if isinstance(value, str) and value.lower() in ("", "0", "false", "off", "no"):
        return False
    raise FieldError(field, gettext("Choose whether to show your name."))


# A hidden signer may have their name shown once this many from their organization signed.
REVEAL_THRESHOLDS = (10, 50, 100, 500)


def parse_reveal_at(value: Any, field: str = "reveal_at") -> int | None:
    """One of REVEAL_THRESHOLDS, or None (empty or missing) for "keep my name hidden"."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 4:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value in REVEAL_THRESHOLDS:
        return value
    raise FieldError(
        field, gettext("Choose when to show your name: at 10, 50, 100 or 500 signatures.")
    )


@dataclass(frozen=True)
class Requester:
    """Who sends a form that may have an email sent (a sign-in or manage link): where it
    comes from, for the rate limits, with the site's signer and settings."""

    client_host: str | None
    signer: Signer
    settings: Settings

    def ip_key(self) -> str:
        """The client's network, as rate limits name it: a keyed hash."""
        return ip_key(self.signer, self.client_host)


def parse_email(value: Any) -> Address:
    """The work address typed into a form, normalized; `FieldError` on the "email" field."""
    if value is None or value == "":
        raise FieldError("email", gettext("Enter your work email address."))
    if not isinstance(value, str):
        raise FieldError("email", gettext("The email address must be text."))
    if len(value) > MAX_ADDRESS_LENGTH + 2:
        raise FieldError("email", gettext("That email address is too long."), "invalid_email")
    try:
        return parse_address(value)
    except AddressError as error:
        raise FieldError("email", error.message, error.code) from None


@dataclass(frozen=True)
class Details:
    """How a signer wants to appear: name, title, shown or hidden, and a reveal threshold."""

    name: str
    title: str
    show_name: bool
    reveal_at: int | None = None

    @classmethod
    def parse(cls, data: Mapping[str, Any], ask_title: bool = True) -> Details:
        """Check the fields; raise `FieldError` for the first bad one.

        A threshold only applies to a hidden name, and needs a name to show.
        """
        name = clean_text(data.get("name"), "name", N_("Your name"), MAX_NAME)
        title = clean_text(data.get("title"), "title", N_("Job title or team"), MAX_TITLE)
        show_name = parse_bool(data.get("show_name"), "show_name")
        if show_name and not name:
            raise FieldError("name", gettext("Enter your name, or choose to keep it hidden."))
        reveal_at = None if show_name else parse_reveal_at(data.get("reveal_at"))
        if reveal_at is not None and not name:
            raise FieldError(
                "name",
                gettext(
                    "Enter your name: it will be shown once %(number)s people from your "
                    "organization have signed.",
                    number=reveal_at,
                ),
            )
        if not ask_title:
            title = ""
        return cls(name=name, title=title, show_name=show_name, reveal_at=reveal_at)


@dataclass(frozen=True)
class SignatureInput(Details):
    """A signature as typed: the signer's details, and the work address they sign with."""

    address: Address = field(kw_only=True)

    @classmethod
    def parse(cls, data: Mapping[str, Any], ask_title: bool = True) -> SignatureInput:
        """Check every field; raise `FieldError` for the first bad one."""
        details = Details.parse(data, ask_title)
        address = parse_email(data.get("email"))
        return cls(**asdict(details), address=address)


LANGUAGE_TAG = re.compile(r"[a-z]{2,3}(-[a-z0-9]{2,8})*", re.IGNORECASE)


def clean_language(value: Any) -> str:
    """The language of the text, as a BCP 47 tag ("en", "es", "pt-BR"); English if empty."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        return "en"
    if len(text) > 35 or not LANGUAGE_TAG.fullmatch(text):
        raise FieldError(
            "language", gettext("Write the language as a code such as en, es, fr or pt-BR.")
        )
    primary, *rest = text.split("-")
    return "-".join([primary.lower(), *(part.upper() if len(part) == 2 else part for part in rest)])
