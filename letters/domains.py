"""Address normalization and allowed-domain matching.

Parsing is left to `email-validator` (RFC syntax, IDNA/UTS-46 mapping of domains). On top of
it this module decides who may sign: the address's ASCII (IDNA) domain must equal an allowed
domain, or be below one where the letter allows subdomains. Comparing the ASCII forms is what
defeats lookalikes: a Cyrillic "i" (U+0456) in "microsoft.com" encodes to a different `xn--` label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import idna
from email_validator import EmailNotValidError, validate_email

from letters.i18n import N_, gettext

MAX_ADDRESS_LENGTH = 254


class AddressError(ValueError):
    """An address that cannot sign; `message` is safe to show to the person who typed it
    (in their language: see letters.forms.FieldError)."""

    def __init__(self, message: str, code: str = "invalid_email") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Address:
    email: str  # where the link goes: ASCII, domain lower-cased
    canonical: str  # who the person is: lower-cased, without a +tag
    domain: str  # ASCII (IDNA) domain, lower-cased


class DomainRule(Protocol):
    domain: str
    organization: str
    include_subdomains: bool


Rule = TypeVar("Rule", bound=DomainRule)


# email-validator explains what is wrong in English only: each of its explanations, by the
# words it contains (checked in this order), becomes one of ours, translated.
REASONS = (
    (("must have an @-sign", "at-sign (@) character", "commercial at"), N_("it needs an @ sign.")),
    (("something before the @-sign",), N_("something must come before the @ sign.")),
    (("too long",), N_("it is too long.")),
    (
        ("two periods in a row", "period and a hyphen", "cannot end with", "cannot start with"),
        N_("dots and hyphens cannot come twice in a row, or at the start or end of a part."),
    ),
    (("before the @-sign",), N_("the part before the @ sign has characters addresses cannot use.")),
    (
        ("after the @-sign", "top-level domain", "IDNA", "special-use"),
        N_("the part after the @ sign is not a domain name such as company.com."),
    ),
)
UNEXPLAINED = N_("it has characters or a form that addresses cannot have.")


def reason_for(explanation: str) -> str:
    """Our message (untranslated) for one of email-validator's explanations."""
    for words, reason in REASONS:
        if any(word in explanation for word in words):
            return reason
    return UNEXPLAINED


def parse_address(raw: str) -> Address:
    """Validate an address typed by a signer and return its normalized forms."""
    text = raw.strip()
    if not text:
        raise AddressError(gettext("Enter your work email address."))
    if len(text) > MAX_ADDRESS_LENGTH:
        raise AddressError(gettext("That email address is too long."))
    if text.endswith("."):
        raise AddressError(gettext("An email address cannot end with a dot."))
    try:
        # Quoted local parts ("a@b"@x) and non-ASCII local parts are refused: company
        # addresses never need them and they are a classic way to hide a second "@".
        result = validate_email(
            text,
            check_deliverability=False,
            allow_smtputf8=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
            allow_display_name=False,
        )
    except EmailNotValidError as error:
        reason = gettext(reason_for(str(error)))
        raise AddressError(
            gettext("That is not a valid email address: %(reason)s", reason=reason)
        ) from None
    domain = result.ascii_domain.lower()
    local = result.local_part.lower()
    email = f"{local}@{domain}"
    canonical_local = local.split("+", 1)[0] or local
    return Address(email=email, canonical=f"{canonical_local}@{domain}", domain=domain)


def normalize_domain(raw: str) -> str:
    """The ASCII form of a domain an author allows (for import and the author pages)."""
    text = raw.strip().lower()
    if not text or text.endswith(".") or "@" in text or "/" in text or " " in text:
        raise ValueError(f"not a domain name: {raw!r}")
    try:
        ascii_domain = idna.encode(text, uts46=True).decode("ascii")
    except idna.IDNAError as error:
        raise ValueError(f"not a domain name: {raw!r} ({error})") from None
    if "." not in ascii_domain:
        raise ValueError(f"not a domain name: {raw!r} (it needs a dot)")
    return ascii_domain


def match_domain(domain: str, rules: Iterable[Rule]) -> Rule | None:
    """The rule that admits `domain` (already ASCII and lower-case), or None."""
    rules = list(rules)
    for rule in rules:
        if domain == rule.domain:
            return rule
    for rule in rules:
        if rule.include_subdomains and domain.endswith("." + rule.domain):
            return rule
    return None


def refusal_message(domain: str, rules: Iterable[DomainRule]) -> str:
    """Explain why an address at `domain` may not sign, naming the domains that may."""
    allowed = sorted(rule.domain for rule in rules)
    names = ", ".join(allowed) if allowed else gettext("no domains yet")
    if "xn--" in domain:
        return gettext(
            "Addresses at %(domain)s cannot sign this letter: the domain uses non-Latin "
            "characters, so it is not one of the allowed domains (%(domains)s).",
            domain=domain,
            domains=names,
        )
    return gettext("Only work addresses at %(domains)s can sign this letter.", domains=names)
