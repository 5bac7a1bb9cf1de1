"""Letters as Markdown files with YAML front matter: the `letters import` command and --demo.

---
slug: drop-the-contract
title: Drop the contract
status: published          # draft, published or closed
ask_title: true            # ask signers for a job title or team (default true)
language: en               # the language the letter is written in (default en)
domains:
  microsoft.com: Microsoft
  linkedin.com: {organization: LinkedIn, subdomains: true}
---
The body, in Markdown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine
from sqlmodel import Session, col, delete, select

from letters.domains import normalize_domain
from letters.forms import FieldError, clean_language
from letters.models import (
    SLUG_PATTERN,
    AllowedDomain,
    Letter,
    LetterStatus,
    LetterVersion,
    utcnow,
)

MAX_BODY = 100_000
DEMO_LETTER = Path(__file__).parent / "demo" / "microsoft-ice.md"


class LetterFileError(ValueError):
    """The file is not a valid letter; the message says what to fix."""


@dataclass(frozen=True)
class DomainSpec:
    domain: str
    organization: str
    include_subdomains: bool


@dataclass(frozen=True)
class LetterFile:
    slug: str
    title: str
    status: LetterStatus
    ask_title: bool
    body: str
    domains: list[DomainSpec]
    language: str = "en"


def _flag(value: Any, name: str) -> bool:
    """A YAML boolean; "false" in quotes is not taken for true."""
    if not isinstance(value, bool):
        raise LetterFileError(f"{name} must be true or false")
    return value


def parse_letter(text: str) -> LetterFile:
    match = re.match(r"\A---\s*\n(.*?)\n---\s*\n(.*)\Z", text, re.DOTALL)
    if not match:
        raise LetterFileError("the file must start with front matter between two '---' lines")
    try:
        meta: Any = yaml.safe_load(match.group(1))
    except yaml.YAMLError as error:
        raise LetterFileError(f"the front matter is not valid YAML: {error}") from None
    if not isinstance(meta, dict):
        raise LetterFileError("the front matter must be a mapping")
    body = match.group(2).strip()
    slug = str(meta.get("slug", "")).strip()
    if not SLUG_PATTERN.match(slug):
        raise LetterFileError("slug must be lower-case letters, digits and single hyphens")
    title = str(meta.get("title", "")).strip()
    if not title or len(title) > 200:
        raise LetterFileError("title is required (at most 200 characters)")
    status = str(meta.get("status", LetterStatus.draft))
    if status not in {s.value for s in LetterStatus}:
        raise LetterFileError("status must be draft, published or closed")
    if not body or len(body) > MAX_BODY:
        raise LetterFileError(f"the body is required (at most {MAX_BODY} characters)")
    raw_domains = meta.get("domains")
    if not isinstance(raw_domains, dict) or not raw_domains:
        raise LetterFileError("domains must map each allowed domain to an organization name")
    domains = []
    for raw_domain, value in raw_domains.items():
        try:
            domain = normalize_domain(str(raw_domain))
        except ValueError as error:
            raise LetterFileError(str(error)) from None
        if isinstance(value, dict):
            organization = str(value.get("organization", "")).strip()
            subdomains = _flag(value.get("subdomains", False), f"{raw_domain}: subdomains")
        else:
            organization, subdomains = str(value or "").strip(), False
        if not organization or len(organization) > 100:
            raise LetterFileError(f"{raw_domain}: give an organization name (up to 100 characters)")
        domains.append(DomainSpec(domain, organization, subdomains))
    if len({spec.domain for spec in domains}) != len(domains):
        raise LetterFileError("a domain is listed twice")
    return LetterFile(
        slug=slug,
        title=title,
        status=LetterStatus(status),
        ask_title=_flag(meta.get("ask_title", True), "ask_title"),
        body=body,
        domains=domains,
        language=_language(meta.get("language", "en")),
    )


def _language(value: Any) -> str:
    try:
        return clean_language(str(value))
    except FieldError:
        raise LetterFileError("language must be a code such as en, es or pt-BR") from None


def import_letter(engine: Engine, letter_file: LetterFile) -> tuple[Letter, bool]:
    """Create the letter, or update the one with the same slug. Returns (letter, created)."""
    now = utcnow()
    with Session(engine) as session:
        letter = session.exec(select(Letter).where(Letter.slug == letter_file.slug)).first()
        created = letter is None
        if letter is None:
            letter = Letter(slug=letter_file.slug, title="", body="", created_at=now)
        text_changed = (letter.title, letter.body) != (letter_file.title, letter_file.body)
        if not created and letter.published_at is not None and text_changed:
            # Once published, a text is never edited in place: keep the text people signed
            # and publish the file's as a new version (letters.authors.revisions).
            _keep_version(session, letter, letter.version, letter.revised_at or letter.published_at)
            letter.version += 1
            letter.revised_at = now
            letter.revision_note = f"Updated from a letter file (version {letter.version})."
        letter.title = letter_file.title
        letter.body = letter_file.body
        letter.ask_title = letter_file.ask_title
        letter.language = letter_file.language
        if letter.status != letter_file.status:
            if letter_file.status == LetterStatus.published and letter.published_at is None:
                letter.published_at = now
            if letter_file.status == LetterStatus.closed:
                letter.published_at = letter.published_at or now
                letter.closed_at = now
            if letter_file.status == LetterStatus.published:
                letter.closed_at = None
            letter.status = letter_file.status
        letter.updated_at = now
        session.add(letter)
        session.flush()
        if letter.published_at is not None:
            _keep_version(session, letter, letter.version, now, letter.revision_note)
        session.exec(delete(AllowedDomain).where(col(AllowedDomain.letter_id) == letter.id))
        for spec in letter_file.domains:
            session.add(
                AllowedDomain(
                    letter_id=letter.id,
                    domain=spec.domain,
                    organization=spec.organization,
                    include_subdomains=spec.include_subdomains,
                )
            )
        session.commit()
        session.refresh(letter)
        return letter, created


def _keep_version(
    session: Session, letter: Letter, number: int, moment: datetime | None, note: str = ""
) -> None:
    """Record the letter's current text as version `number`, unless it is recorded."""
    exists = session.exec(
        select(LetterVersion).where(
            LetterVersion.letter_id == letter.id, LetterVersion.number == number
        )
    ).first()
    if exists is None:
        session.add(
            LetterVersion(
                letter_id=letter.id,
                number=number,
                title=letter.title,
                body=letter.body,
                note=note,
                created_at=moment or utcnow(),
            )
        )


def load_demo(engine: Engine) -> Letter:
    letter, _ = import_letter(engine, parse_letter(DEMO_LETTER.read_text(encoding="utf-8")))
    return letter
