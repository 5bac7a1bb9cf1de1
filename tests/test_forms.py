"""What signers type is cleaned or refused before anything touches the database."""

from __future__ import annotations

import pytest

from letters.forms import FieldError, SignatureInput, clean_text


def test_text_is_normalized():
    assert clean_text("  Ada \n\t Lovelace ", "name", "Name", 100) == "Ada Lovelace"
    assert clean_text("Cafe\u0301", "name", "Name", 100) == "Caf\u00e9"  # NFC
    assert clean_text(None, "name", "Name", 100) == ""
    # Joiners some scripts need are kept.
    assert clean_text("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645", "n", "N", 100)


@pytest.mark.parametrize(
    "value",
    [
        "Ada\u202eecalevol",  # right-to-left override
        "Ada\u2066x\u2069",  # isolates
        "Ada\x00",
        "Ada\x1b[31m",
        "Ada\u200b",  # zero-width space
        "Ada\ufeff",
        "x" * 101,
        123,
        ["Ada"],
    ],
)
def test_bad_text_is_refused(value):
    with pytest.raises(FieldError) as error:
        clean_text(value, "name", "Your name", 100)
    assert error.value.field == "name"
    assert error.value.message


def test_signature_input():
    form = SignatureInput.parse(
        {"name": "Ada", "email": "Ada@Microsoft.com", "title": "SDE", "show_name": "1"}
    )
    assert (form.name, form.title, form.show_name, form.address.email) == (
        "Ada",
        "SDE",
        True,
        "ada@microsoft.com",
    )
    assert SignatureInput.parse({"email": "a@b.com"}).show_name is False  # hidden by default
    assert SignatureInput.parse({"email": "a@b.com", "title": "x"}, ask_title=False).title == ""


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"email": ""}, "email"),
        ({"email": None}, "email"),
        ({"email": 5}, "email"),
        ({"email": "a@b.com", "show_name": "maybe"}, "show_name"),
        ({"email": "a@b.com", "show_name": 2}, "show_name"),
        ({"email": "a@b.com", "show_name": True}, "name"),
        ({"email": "a" * 300 + "@b.com"}, "email"),
    ],
)
def test_signature_input_errors(data, field):
    with pytest.raises(FieldError) as error:
        SignatureInput.parse(data)
    assert error.value.field == field


def test_a_letters_language_is_a_language_tag():
    import pytest

    from letters.forms import FieldError, clean_language
    from letters.importer import LetterFileError, parse_letter

    assert clean_language("") == "en"
    assert clean_language(" ES ") == "es"
    assert clean_language("pt-br") == "pt-BR"
    assert clean_language("zh-Hant") == "zh-Hant"
    for bad in ("français", "e", "en_US", 'en" onload="x', "x" * 40):
        with pytest.raises(FieldError):
            clean_language(bad)
    text = "---\nslug: s\ntitle: T\nstatus: draft\nlanguage: de\ndomains:\n  a.com: A\n---\nText\n"
    assert parse_letter(text).language == "de"
    assert parse_letter(text.replace("language: de\n", "")).language == "en"
    with pytest.raises(LetterFileError):
        parse_letter(text.replace("language: de", "language: Deutsch!"))
