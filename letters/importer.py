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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine
from sqlmodel import Session, select

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

    def rule(self, letter_id: int) -> AllowedDomain:
        """The row that lets this domain's staff sign the letter."""
        return AllowedDomain(
            letter_id=letter_id,
            domain=self.domain,
            organization=self.organization,
            include_subdomains=self.include_subdomains,
        )


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


# A letter moves one way: a file may publish a draft or close a letter, never go back.
_STAGE = {LetterStatus.draft: 0, LetterStatus.published: 1, LetterStatus.closed: 2}


@dataclass
class Imported:
    """What `import_file` did: `changes` it made and what it `kept` against the file."""

    letter: Letter
    created: bool
    changes: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def _language(value: Any) -> str:
    try:
        return clean_language(str(value))
    except FieldError:
        raise LetterFileError("language must be a code such as en, es or pt-BR") from None


def import_letter(engine: Engine, letter_file: LetterFile) -> tuple[Letter, bool]:
    """Create the letter, or update the one with the same slug. Returns (letter, created)."""
    imported = import_file(engine, letter_file)
    return imported.letter, imported.created


def import_file(engine: Engine, letter_file: LetterFile) -> Imported:
    """Create the letter, or bring the one with the same slug closer to the file. Commits.

    Importing the same file again changes nothing. For a letter that exists, the file never
    goes back on what the site did: a closed letter is not reopened nor a published one
    unpublished, and once published its domains are only added to, never removed or
    changed (signatures were counted under their organizations). A published text is never
    edited in place: a different text becomes a new version.
    """
    now = utcnow()
    with Session(engine) as session:
        letter = session.exec(select(Letter).where(Letter.slug == letter_file.slug)).first()
        if letter is None:
            letter = Letter(slug=letter_file.slug, title="", body="", created_at=now)
            result = Imported(letter, created=True)
        else:
            result = Imported(letter, created=False)
        was_published = letter.published_at is not None
        _bring_text(session, letter, letter_file, now, result)
        if letter.ask_title != letter_file.ask_title and not result.created:
            result.changes.append(f"ask_title: {str(letter_file.ask_title).lower()}")
        letter.ask_title = letter_file.ask_title
        if letter.language != letter_file.language and not result.created:
            result.changes.append(f"language: {letter_file.language}")
        letter.language = letter_file.language
        _move_status(letter, letter_file.status, now, result)
        session.add(letter)
        session.flush()
        if letter.published_at is not None:
            _keep_version(session, letter, letter.version, now, letter.revision_note)
        _bring_domains(session, letter, letter_file.domains, was_published, result)
        if result.created or result.changes:
            letter.updated_at = now
            session.add(letter)
        session.commit()
        session.refresh(letter)
        return result


def _bring_text(
    session: Session, letter: Letter, letter_file: LetterFile, now: datetime, result: Imported
) -> None:
    """A draft's text becomes the file's; a published one's becomes a new version; a closed
    one's stays (as in the author pages, a closed letter is reopened before it is revised)."""
    if (letter.title, letter.body) == (letter_file.title, letter_file.body):
        return
    if not result.created and letter.status == LetterStatus.closed:
        result.kept.append("the text: a closed letter's text does not change")
        return
    if letter.published_at is not None:
        # Keep the text people signed and publish the file's as a new version.
        _keep_version(session, letter, letter.version, letter.revised_at or letter.published_at)
        letter.version += 1
        letter.revised_at = now
        letter.revision_note = f"Updated from a letter file (version {letter.version})."
        result.changes.append(f"text: published as version {letter.version}")
    elif not result.created:
        result.changes.append("text")
    letter.title = letter_file.title
    letter.body = letter_file.body


def _move_status(letter: Letter, wanted: LetterStatus, now: datetime, result: Imported) -> None:
    current = LetterStatus.draft if result.created else LetterStatus(letter.status)
    if _STAGE[wanted] < _STAGE[current]:
        result.kept.append(
            f"status {current} (the file says {wanted}: a letter file never reopens "
            "or unpublishes a letter)"
        )
        return
    if wanted != current or result.created:
        if wanted != LetterStatus.draft:
            letter.published_at = letter.published_at or now
        if wanted == LetterStatus.closed:
            letter.closed_at = now
        letter.status = wanted
        if not result.created:
            result.changes.append(f"status: {wanted}")


def _same(rule: AllowedDomain, spec: DomainSpec) -> bool:
    return (rule.organization, rule.include_subdomains) == (
        spec.organization,
        spec.include_subdomains,
    )


def _bring_domains(
    session: Session,
    letter: Letter,
    specs: list[DomainSpec],
    was_published: bool,
    result: Imported,
) -> None:
    """A draft's domains become the file's; a published letter's only gain new ones."""
    rules = session.exec(select(AllowedDomain).where(AllowedDomain.letter_id == letter.id))
    existing = {rule.domain: rule for rule in rules}
    wanted = {spec.domain: spec for spec in specs}
    for domain, rule in existing.items():
        spec = wanted.get(domain)
        if spec is not None and _same(rule, spec):
            continue
        if was_published:
            what = "not in the file" if spec is None else "changed in the file"
            result.kept.append(
                f"domain {domain} ({rule.organization}), {what}: domains cannot be "
                "removed or changed after publishing"
            )
        else:
            session.delete(rule)
            if spec is None:
                result.changes.append(f"removed {domain}")
    session.flush()
    for domain, spec in wanted.items():
        before = existing.get(domain)
        if before is not None and (was_published or _same(before, spec)):
            continue
        session.add(spec.rule(letter.id))
        if not result.created:
            verb = "changed" if before is not None else "added"
            result.changes.append(f"{verb} {domain} ({spec.organization})")


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


def load_demo(engine: Engine) -> Imported:
    """Create the demo letter, or leave the one there as it is (its authors may have
    edited it, published a new version, closed it or added domains)."""
    letter_file = parse_letter(DEMO_LETTER.read_text(encoding="utf-8"))
    with Session(engine) as session:
        letter = session.exec(select(Letter).where(Letter.slug == letter_file.slug)).first()
    if letter is not None:
        return Imported(letter, created=False)
    return import_file(engine, letter_file)
