"""What authors type into the letter forms, checked field by field.

Every error is collected (not just the first) and tied to its field, so a form can be
shown again with all its problems and everything the author typed. Messages are in the
author's language (i18n.gettext).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from letters.domains import normalize_domain
from letters.forms import FieldError, clean_language, clean_text
from letters.i18n import N_, format_number, gettext
from letters.importer import DomainSpec
from letters.models import SLUG_PATTERN

MAX_TITLE = 200
# Letters are read on phones and printed for delivery; 20,000 characters is about 3,000
# words. It also keeps a whole form under the request body limit (MAX_BODY_BYTES).
MAX_BODY = 20_000
MAX_NOTE = 300
MAX_ORGANIZATION = 100
MAX_GOAL = 10_000_000
MAX_DOMAINS = 50
# /authors/letters/new starts a letter, so no letter may be called "new".
RESERVED_SLUGS = {"new"}
DATE = re.compile(r"\A\d{4}-\d{2}-\d{2}\Z")


class FormErrors(Exception):
    """Field name -> message, for every field that is wrong."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(", ".join(errors))
        self.errors = errors


@dataclass
class LetterDraft:
    title: str
    slug: str
    body: str
    ask_title: bool
    goal: int | None
    closes_at: datetime | None
    domains: list[DomainSpec] = field(default_factory=list)
    language: str = "en"


@dataclass
class LetterSettings:
    ask_title: bool
    goal: int | None
    closes_at: datetime | None
    domains: list[DomainSpec] = field(default_factory=list)  # domains to add


@dataclass
class Revision:
    title: str
    body: str
    note: str


def slugify(text: str) -> str:
    """A slug suggested from a title: ASCII letters and digits joined by single hyphens."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > 80:
            break
        slug = candidate
    return slug


def clean_title(value: Any) -> str:
    title = clean_text(value, "title", N_("The title"), MAX_TITLE)
    if not title:
        raise FieldError("title", gettext("Give the letter a title."))
    return title


def clean_body(value: Any, name: str = "body") -> str:
    """Markdown as typed, with line endings unified and control characters removed.

    Raw HTML stays in the text: it is shown as text, never run (letters.markdown).
    """
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FieldError(name, gettext("The text must be text."))
    text = unicodedata.normalize("NFC", value.replace("\r\n", "\n").replace("\r", "\n"))
    text = "".join(
        char
        for char in text
        if char in "\n\t" or unicodedata.category(char) not in ("Cc", "Cs", "Co", "Cn")
    ).strip()
    if len(text) > MAX_BODY:
        message = gettext(
            "The text is %(length)s characters long; a letter can have at most %(max)s. "
            "Shorten it, or link to a longer document.",
            length=format_number(len(text)),
            max=format_number(MAX_BODY),
        )
        raise FieldError(name, message, "too_long")
    return text


def clean_slug(value: Any, title: str) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        text = slugify(title)
        if not text:
            raise FieldError(
                "slug", gettext("Choose the letter's address: letters, digits and hyphens.")
            )
    if text in RESERVED_SLUGS:
        raise FieldError(
            "slug",
            gettext("“%(slug)s” is kept for the site itself. Choose another address.", slug=text),
        )
    if not SLUG_PATTERN.match(text):
        suggestion = slugify(text) or slugify(title)
        rule = gettext(
            "Use only lower-case letters a-z, digits and single hyphens, at most 80 characters."
        )
        if suggestion:
            rule += " " + gettext("For example: %(slug)s", slug=suggestion)
        raise FieldError("slug", rule)
    return text


def clean_goal(value: Any) -> int | None:
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        return None
    text = text.replace(",", "").replace(" ", "")
    if not (text.isascii() and text.isdigit() and len(text) <= 8) or not 1 <= int(text) <= MAX_GOAL:
        raise FieldError(
            "goal",
            gettext(
                "Enter a whole number from 1 to %(max)s, or leave it empty.",
                max=format_number(MAX_GOAL),
            ),
        )
    return int(text)


def clean_closes_on(value: Any, now: datetime) -> datetime | None:
    """A closing day (YYYY-MM-DD): the letter closes at the end of that day, UTC."""
    text = value.strip() if isinstance(value, str) else ""
    if not text:
        return None
    try:
        if not DATE.match(text):
            raise ValueError
        day = date.fromisoformat(text)
    except ValueError:
        raise FieldError(
            "closes_on", gettext("Enter a date as YYYY-MM-DD, or leave it empty.")
        ) from None
    closes_at = datetime.combine(day + timedelta(days=1), time(0), UTC)
    if closes_at <= now:
        raise FieldError("closes_on", gettext("Choose today or a later day."))
    if day.year > now.year + 5:
        raise FieldError("closes_on", gettext("Choose a day in the next five years."))
    return closes_at


def closes_on(closes_at: datetime | None) -> str:
    """The day shown in the form for a closing time."""
    return (closes_at - timedelta(days=1)).date().isoformat() if closes_at else ""


def clean_domains(data: Mapping[str, Any], errors: dict[str, str]) -> list[DomainSpec]:
    """Rows `domain-N`, `organization-N`, `subdomains-N`; empty rows are skipped."""
    specs: list[DomainSpec] = []
    seen: set[str] = set()
    for index in range(MAX_DOMAINS):
        raw_domain = data.get(f"domain-{index}")
        raw_organization = data.get(f"organization-{index}")
        domain_text = raw_domain.strip() if isinstance(raw_domain, str) else ""
        if not domain_text and not (isinstance(raw_organization, str) and raw_organization.strip()):
            continue
        try:
            if not domain_text:
                raise FieldError(
                    f"domain-{index}", gettext("Enter the domain, such as example.com.")
                )
            try:
                domain = normalize_domain(domain_text[:253].lstrip("@"))
            except ValueError:
                raise FieldError(
                    f"domain-{index}",
                    gettext("Enter a domain name such as example.com, without @."),
                ) from None
            if domain in seen:
                raise FieldError(
                    f"domain-{index}", gettext("%(domain)s is listed twice.", domain=domain)
                )
            seen.add(domain)
        except FieldError as error:
            errors[error.field] = error.message
            continue
        try:
            organization = clean_text(
                raw_organization, f"organization-{index}", N_("The organization"), MAX_ORGANIZATION
            )
            if not organization:
                raise FieldError(
                    f"organization-{index}",
                    gettext("Name the organization whose staff use %(domain)s.", domain=domain),
                )
        except FieldError as error:
            errors[error.field] = error.message
            continue
        specs.append(DomainSpec(domain, organization, _checked(data.get(f"subdomains-{index}"))))
    return specs


def _checked(value: Any) -> bool:
    return isinstance(value, str) and value in ("1", "on", "true", "yes")


def parse_draft(data: Mapping[str, Any], now: datetime) -> LetterDraft:
    """A draft's fields; raises FormErrors. A draft may still lack a body or domains."""
    errors: dict[str, str] = {}
    title = _field(errors, clean_title, data.get("title")) or ""
    slug = _field(errors, clean_slug, data.get("slug"), title) or ""
    body = _field(errors, clean_body, data.get("body")) or ""
    language = _field(errors, clean_language, data.get("language")) or "en"
    goal = _field(errors, clean_goal, data.get("goal"))
    closes_at = _field(errors, clean_closes_on, data.get("closes_on"), now)
    domains = clean_domains(data, errors)
    if errors:
        raise FormErrors(errors)
    return LetterDraft(
        title=title,
        slug=slug,
        body=body,
        ask_title=_checked(data.get("ask_title")),
        goal=goal,
        closes_at=closes_at,
        domains=domains,
        language=language,
    )


def parse_settings(data: Mapping[str, Any], now: datetime) -> LetterSettings:
    errors: dict[str, str] = {}
    goal = _field(errors, clean_goal, data.get("goal"))
    closes_at = _field(errors, clean_closes_on, data.get("closes_on"), now)
    domains = clean_domains(data, errors)
    if errors:
        raise FormErrors(errors)
    return LetterSettings(_checked(data.get("ask_title")), goal, closes_at, domains)


def parse_revision(data: Mapping[str, Any]) -> Revision:
    errors: dict[str, str] = {}
    title = _field(errors, clean_title, data.get("title")) or ""
    body = _field(errors, clean_body, data.get("body")) or ""
    if "body" not in errors and not body:
        errors["body"] = gettext("The letter needs a text.")
    note = _field(errors, clean_text, data.get("note"), "note", N_("The note"), MAX_NOTE) or ""
    if "note" not in errors and not note:
        errors["note"] = gettext(
            "Say in a sentence what changed; readers see it with the new version."
        )
    if errors:
        raise FormErrors(errors)
    return Revision(title=title, body=body, note=note)


def _field(errors: dict[str, str], parse: Any, *args: Any) -> Any:
    try:
        return parse(*args)
    except FieldError as error:
        errors[error.field] = error.message
        return None
