"""Validation of what signers type, shared by the HTML form and the JSON API."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from letters.domains import MAX_ADDRESS_LENGTH, Address, AddressError, parse_address

MAX_NAME = 100
MAX_TITLE = 120

# Bidirectional overrides and isolates can make a name display as something else
# ("Trojan Source"); zero-width joiners are kept because some scripts need them.
BIDI_CONTROLS = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
ALLOWED_FORMAT_CHARS = {"\u200c", "\u200d"}


class FieldError(ValueError):
    """A bad value in one field; `message` is written for the person who typed it."""

    def __init__(self, field: str, message: str, code: str = "invalid_field") -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.code = code


def clean_text(value: Any, field: str, label: str, max_length: int) -> str:
    """NFC-normalize, trim and collapse whitespace; refuse control and bidi characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FieldError(field, f"{label} must be text.")
    if len(value) > max_length * 4:
        raise FieldError(field, f"{label} must be at most {max_length} characters.")
    text = " ".join(unicodedata.normalize("NFC", value).split())
    for char in text:
        category = unicodedata.category(char)
        if char in BIDI_CONTROLS or (
            category in ("Cc", "Cs", "Co", "Cn", "Cf") and char not in ALLOWED_FORMAT_CHARS
        ):
            raise FieldError(field, f"{label} contains an invisible or control character.")
    if len(text) > max_length:
        raise FieldError(field, f"{label} must be at most {max_length} characters.")
    return text


def parse_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if value is None:
        return False
    if isinstance(value, str) and value.lower() in ("1", "true", "on", "yes"):
        return True
    if isinstance(value, str) and value.lower() in ("", "0", "false", "off", "no"):
        return False
    raise FieldError(field, "Choose whether to show your name.")


@dataclass(frozen=True)
class SignatureInput:
    name: str
    title: str
    show_name: bool
    address: Address

    @classmethod
    def parse(cls, data: Mapping[str, Any], ask_title: bool = True) -> SignatureInput:
        """Check every field; raise `FieldError` for the first bad one."""
        name = clean_text(data.get("name"), "name", "Your name", MAX_NAME)
        title = clean_text(data.get("title"), "title", "Job title or team", MAX_TITLE)
        show_name = parse_bool(data.get("show_name"), "show_name")
        if show_name and not name:
            raise FieldError("name", "Enter your name, or choose to keep it hidden.")
        if not ask_title:
            title = ""
        raw_email = data.get("email")
        if raw_email is None or raw_email == "":
            raise FieldError("email", "Enter your work email address.")
        if not isinstance(raw_email, str):
            raise FieldError("email", "The email address must be text.")
        if len(raw_email) > MAX_ADDRESS_LENGTH + 2:
            raise FieldError("email", "That email address is too long.", "invalid_email")
        try:
            address = parse_address(raw_email)
        except AddressError as error:
            raise FieldError("email", error.message, error.code) from None
        return cls(name=name, title=title, show_name=show_name, address=address)
