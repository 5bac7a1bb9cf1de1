"""Who may sign: address normalization and allowed-domain matching."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from letters.domains import AddressError, match_domain, normalize_domain, parse_address


@dataclass
class Rule:
    domain: str
    organization: str
    include_subdomains: bool = False


RULES = [Rule("microsoft.com", "Microsoft"), Rule("corp.example", "Example", True)]


@pytest.mark.parametrize(
    ("raw", "email", "canonical"),
    [
        ("Ada@Microsoft.com", "ada@microsoft.com", "ada@microsoft.com"),
        ("  ada+letters@microsoft.com ", "ada+letters@microsoft.com", "ada@microsoft.com"),
        ("ADA+X+Y@MICROSOFT.COM", "ada+x+y@microsoft.com", "ada@microsoft.com"),
        ("a@ｍicrosoft.com", "a@microsoft.com", "a@microsoft.com"),  # noqa: RUF001 fullwidth m maps to m
    ],
)
def test_addresses_are_normalized(raw, email, canonical):
    address = parse_address(raw)
    assert (address.email, address.canonical, address.domain) == (
        email,
        canonical,
        "microsoft.com",
    )


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "no-at-sign",
        "a@microsoft.com.",  # trailing dot
        '"a@microsoft.com"@evil.com',  # quoted local part hiding an @
        '"a"@microsoft.com',
        "a@[127.0.0.1]",
        "Ada <ada@microsoft.com>",
        "a@b@microsoft.com",
        "a\u200b@microsoft.com",  # zero-width space
        "ä@microsoft.com",  # non-ASCII local part
        "a" * 250 + "@microsoft.com",
    ],
)
def test_bad_addresses_are_refused_with_a_message(raw):
    with pytest.raises(AddressError) as error:
        parse_address(raw)
    assert error.value.message


@pytest.mark.parametrize(
    "raw",
    [
        "a@microsoft.com.evil.com",
        "a@evilmicrosoft.com",
        "a@microsoft.co",
        "a@m\u0456crosoft.com",  # Cyrillic i
        "a@micros\u043eft.com",  # Cyrillic o
        "a@xn--mcrosoft-thh.com",  # the same lookalike already in punycode
        "a@sub.microsoft.com",  # subdomains are not allowed for this rule
        "a@notcorp.example",
        "a@corp.example.evil",
    ],
)
def test_lookalikes_do_not_match(raw):
    address = parse_address(raw)
    assert match_domain(address.domain, RULES) is None


def test_exact_and_subdomain_matches():
    assert match_domain(parse_address("a@MICROSOFT.com").domain, RULES).organization == "Microsoft"
    assert match_domain(parse_address("a@corp.example").domain, RULES).organization == "Example"
    assert match_domain(parse_address("a@eu.dev.corp.example").domain, RULES).organization == (
        "Example"
    )


def test_normalize_domain_for_authors():
    assert normalize_domain("Bücher.DE") == "xn--bcher-kva.de"
    assert normalize_domain(" microsoft.com ") == "microsoft.com"
    for bad in ["", "microsoft.com.", "a@b.com", "localhost", "a b.com", "x/y.com"]:
        with pytest.raises(ValueError, match="not a domain"):
            normalize_domain(bad)


def test_refusal_message_names_the_allowed_domains():
    from letters.domains import refusal_message

    assert "microsoft.com" in refusal_message("gmail.com", RULES)
    assert "non-Latin" in refusal_message("xn--mcrosoft-thh.com", RULES)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("no-at-sign", "it needs an @ sign."),
        ("@microsoft.com", "something must come before the @ sign."),
        ("a..b@microsoft.com", "dots and hyphens cannot come twice in a row"),
        ("ä@microsoft.com", "the part before the @ sign has characters"),
        ("a@microsoft", "the part after the @ sign is not a domain name"),
    ],
)
def test_email_validators_explanations_become_messages_of_our_own(raw, reason):
    with pytest.raises(AddressError) as error:
        parse_address(raw)
    assert error.value.message.startswith("That is not a valid email address: " + reason)
    assert "@-sign" not in error.value.message  # none of email-validator's English


def test_every_refusal_is_in_the_readers_language():
    from letters import i18n

    i18n.load()
    with i18n.using("es"):
        for raw in ("no-at-sign", "a..b@microsoft.com", "a@microsoft", "a\u200b@microsoft.com"):
            with pytest.raises(AddressError) as error:
                parse_address(raw)
            message = error.value.message
            assert message.startswith("Esa no es una dirección de correo válida"), message
            assert "@-sign" not in message and " the " not in message, message
