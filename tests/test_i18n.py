"""Interface languages: complete catalogs, pages and emails in the reader's language, a
switcher that cannot redirect elsewhere, caches kept per language, the API in English."""

from __future__ import annotations

import re
from datetime import date
from email.header import decode_header, make_header
from typing import Any

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from starlette.routing import Route
from starlette.testclient import TestClient

from letters import i18n
from letters.app import create_app
from letters.settings import PROJECT_ROOT
from tests.authors.helpers import post_form, sign_in_as
from tests.helpers import confirm_api, letter_csrf, sign_api

SPANISH = {"Accept-Language": "es-ES,es;q=0.9"}
TRANSLATED = [code for code in i18n.LANGUAGES if code != i18n.DEFAULT]
TEMPLATE = i18n.LOCALE_DIR / "messages.pot"
PLACEHOLDER = re.compile(r"%\((\w+)\)[sd]")
TAG = re.compile(r"</?([a-z]+)")
PAGES = [
    "/",
    "/letters/test-letter",
    "/letters/test-letter/tally",
    "/letters/test-letter/widget",
    "/letters/test-letter/signatures",
    "/letters/test-letter/history",
    "/letters/test-letter/history/1",
    "/letters/test-letter/receipt",
    "/letters/test-letter/manage",
    "/authors/sign-in",
    "/no-such-page",
]


# --- the catalog ---------------------------------------------------------------------------


def extracted() -> dict[Any, list[str]]:
    """Every message `pybabel extract -F babel.cfg` finds, with where it was found."""
    with (PROJECT_ROOT / "babel.cfg").open() as config:
        method_map, options_map = parse_mapping_cfg(config)
    found: dict[Any, list[str]] = {}
    for filename, lineno, message, _, _ in extract_from_dir(PROJECT_ROOT, method_map, options_map):
        key = message if isinstance(message, str) else tuple(message)
        found.setdefault(key, []).append(f"{filename}:{lineno}")
    return found


@pytest.fixture(scope="module")
def messages() -> dict[Any, list[str]]:
    found = extracted()
    assert len(found) > 400  # the templates and the package, not an empty walk
    return found


@pytest.fixture(scope="module", params=TRANSLATED)
def catalog(request: pytest.FixtureRequest) -> Any:
    """The catalog of each language the switcher offers besides English."""
    path = i18n.LOCALE_DIR / request.param / "LC_MESSAGES" / "messages.po"
    with path.open("rb") as file:
        return read_po(file, locale=request.param)


def forms(message: Any) -> list[str]:
    return [message] if isinstance(message, str) else list(message)


def test_every_message_has_a_translation(messages, catalog):
    missing, fuzzy = [], []
    for key, where in messages.items():
        entry = catalog.get(key)
        strings = forms(entry.string) if entry is not None else []
        expected = catalog.num_plurals if isinstance(key, tuple) else 1
        if entry is None or not all(strings) or len(strings) != expected:
            missing.append(f"{where[0]}: {key!r}")
        elif entry.fuzzy:
            fuzzy.append(f"{where[0]}: {key!r}")
    assert not missing, "untranslated (see docs/translations.md):\n" + "\n".join(missing)
    assert not fuzzy, "marked fuzzy, so not used:\n" + "\n".join(fuzzy)
    assert not catalog.fuzzy


def test_translations_keep_the_placeholders_and_the_markup(messages, catalog):
    for key in messages:
        entry = catalog.get(key)
        sources = forms(key)
        for translated in forms(entry.string):
            for source in sources:
                assert set(PLACEHOLDER.findall(translated)) == set(PLACEHOLDER.findall(source)), (
                    key,
                    translated,
                )
            assert sorted(TAG.findall(translated)) == sorted(TAG.findall(sources[0])), (
                key,
                translated,
            )


def test_the_template_lists_every_message(messages):
    """letters/locale/messages.pot is what `pybabel update` starts from: keep it current."""
    with TEMPLATE.open("rb") as file:
        template = read_po(file)
    listed = {message.id for message in template if message.id}
    assert set(messages) - listed == set(), "run the extract command in docs/translations.md"


def test_spanish_uses_two_plural_forms():
    with (i18n.LOCALE_DIR / "es" / "LC_MESSAGES" / "messages.po").open("rb") as file:
        assert read_po(file, locale="es").plural_forms == "nplurals=2; plural=(n != 1);"
    with i18n.using("es"):
        assert i18n.ngettext("verified signature", "verified signatures", 1) == "firma verificada"
        assert i18n.ngettext("verified signature", "verified signatures", 0) == (
            "firmas verificadas"
        )


# --- choosing the language -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cookie", "header", "expected"),
    [
        (None, "", "en"),
        (None, "es-ES,es;q=0.9", "es"),
        (None, "es-419", "es"),
        (None, "ES", "es"),
        (None, "fr-FR,fr;q=0.9", "en"),
        (None, "fr-FR,es;q=0.5,en;q=0.8", "en"),
        (None, "fr-FR,en;q=0.5,es;q=0.8", "es"),
        (None, "es;q=0, en", "en"),
        (None, "*", "en"),
        (None, "es;q=abc", "en"),
        (None, ";;,,q=1,-,é", "en"),
        (None, "x" * 5000, "en"),
        ("es", "en-US", "es"),
        ("en", "es-ES", "en"),
        ("xx", "es-ES", "es"),
    ],
)
def test_negotiation(cookie, header, expected):
    assert i18n.negotiate(cookie, header) == expected


def page_language(html: str) -> str:
    match = re.search(r'<html lang="([^"]+)"', html)
    assert match
    return match.group(1)


def test_pages_follow_the_browser_language(client, letter):
    for path in PAGES:
        english = client.get(path)
        spanish = client.get(path, headers=SPANISH)
        assert page_language(english.text) == "en", path
        assert page_language(spanish.text) == "es", path
        assert english.headers["content-language"] == "en"
        assert spanish.headers["content-language"] == "es"
        # The letter page's address says its language: its shared address redirects by it.
        varies = spanish.history[0] if spanish.history else spanish
        assert "Accept-Language, Cookie" in varies.headers["vary"], path
    page = client.get("/letters/test-letter", headers=SPANISH).text
    assert "Firmar esta carta" in page
    assert re.search(r"0</strong>\s+firmas verificadas", page)
    assert "Sign this letter" not in page
    assert "We ask for <strong>better</strong> things." in page  # the letter is as written
    assert "Test letter" in page
    for unsupported in ("fr-FR,fr;q=0.9", "de", "*", "zz-ZZ"):
        other = client.get("/letters/test-letter", headers={"Accept-Language": unsupported})
        assert page_language(other.text) == "en"
        assert "Sign this letter" in other.text


def test_the_cookie_wins_over_the_browser(client, letter):
    client.cookies.set("lang", "es")
    assert "Firmar esta carta" in client.get("/letters/test-letter").text
    client.cookies.set("lang", "en")
    assert "Sign this letter" in client.get("/letters/test-letter", headers=SPANISH).text


def test_the_switcher_sets_the_cookie_and_comes_back(client, letter):
    response = client.get(
        "/language/es", params={"next": "/letters/test-letter?x=1"}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/letters/test-letter?x=1"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("lang=es;")
    assert "Max-Age=31536000" in cookie
    assert "SameSite=lax" in cookie
    assert "Path=/" in cookie
    assert response.headers["cache-control"] == "no-store"
    assert "Firmar esta carta" in client.get("/letters/test-letter").text
    client.get("/language/en", params={"next": "/"})
    assert "Sign this letter" in client.get("/letters/test-letter", headers=SPANISH).text
    assert client.get("/language/xx", params={"next": "/"}).status_code == 404


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "http:evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "",
        " /letters",
    ],
)
def test_the_switcher_never_sends_anyone_to_another_site(client, target):
    response = client.get("/language/es", params={"next": target}, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert response.headers["set-cookie"].startswith("lang=es;")


def switcher(html: str) -> str:
    match = re.search(r'<nav class="languages".*?</nav>', html, flags=re.S)
    assert match, "no language switcher"
    return match.group(0)


def test_the_switcher_is_a_labelled_list_of_links_in_their_own_language(client, letter):
    nav = switcher(client.get("/letters/test-letter/signatures").text)
    assert 'aria-label="Language"' in nav
    english = '<a href="/language/en?next=/letters/test-letter/signatures" lang="en"'
    assert english in nav
    assert 'hreflang="en" aria-current="true">English</a>' in nav
    assert 'lang="es" hreflang="es">Español</a>' in nav
    spanish = switcher(client.get("/letters/test-letter", headers=SPANISH).text)
    assert 'aria-label="Idioma"' in spanish
    assert 'hreflang="es" aria-current="true">Español</a>' in spanish
    assert spanish.count("aria-current") == 1
    # A page with a query comes back to it; an error page, home.
    sign_in = switcher(client.get("/authors/sign-in?next=/authors").text)
    assert "/language/es?next=/authors/sign-in%3Fnext%3D/authors" in sign_in
    assert '/language/es?next=/" lang="es"' in switcher(client.get("/no-such-page").text)


# --- what Python says on pages, and what it says in the API ---------------------------------


def test_form_errors_and_link_problems_are_translated(client, letter):
    token = letter_csrf(client)
    response = client.post(
        "/letters/test-letter/sign",
        data={"csrftoken": token, "email": "ana@evil.example", "show_name": "0"},
        headers=SPANISH,
    )
    assert response.status_code == 422
    assert "Solo pueden firmar esta carta las direcciones de trabajo de" in response.text
    assert "corp.example, github.com, microsoft.com" in response.text
    assert "Revise el formulario, por favor" in response.text
    response = client.post(
        "/letters/test-letter/sign",
        data={"csrftoken": token, "email": "ana@github.com", "name": "x" * 500},
        headers=SPANISH,
    )
    assert "Su nombre: como máximo 100 caracteres." in response.text
    problem = client.get("/verify/not-a-token", headers=SPANISH)
    assert problem.status_code == 400
    assert "Este enlace no es válido." in problem.text
    expired_form = client.post("/letters/test-letter/sign", data={}, headers=SPANISH)
    assert expired_form.status_code == 403
    assert "Revise el formulario y vuelva a enviarlo" in expired_form.text
    other_site = {**SPANISH, "Sec-Fetch-Site": "cross-site"}
    expired_form = client.post("/letters/test-letter/sign", data={}, headers=other_site)
    assert expired_form.status_code == 403
    assert "Este formulario ha caducado." in expired_form.text


def test_the_json_api_answers_in_english_whatever_the_reader_reads(client, letter):
    client.cookies.set("lang", "es")
    english = sign_api(TestClient(client.app), "ana@evil.example").json()
    spanish = sign_api(client, "ana@evil.example", **SPANISH)
    assert spanish.json() == english
    assert english["error"]["message"].startswith("Only work addresses at")
    assert "vary" not in spanish.headers
    assert "content-language" not in spanish.headers
    bad = confirm_api(client, "not-a-token")
    assert bad.json()["error"]["message"] == "This link is not valid."
    missing = client.get("/api/letters/nope", headers=SPANISH)
    assert missing.json()["error"]["message"] == "No published letter has this address."
    badge = client.get("/letters/test-letter/badge.svg", headers=SPANISH)
    assert "verified signatures" in badge.text
    assert "vary" not in badge.headers


def test_numbers_and_dates_are_written_as_the_reader_writes_them():
    with i18n.using("es"):
        assert i18n.format_number(1234) == "1234"
        assert i18n.format_number(12345) == "12.345"
        assert i18n.format_number(1234567) == "1.234.567"
        assert i18n.long_date(date(2025, 3, 5)) == "5 de marzo de 2025"
    assert i18n.format_number(1234) == "1,234"
    assert i18n.long_date(date(2025, 3, 5)) == "5 March 2025"


# --- emails ---------------------------------------------------------------------------------


def subject(message: Any) -> str:
    return str(make_header(decode_header(message["Subject"])))


def test_emails_are_in_the_language_of_the_reader_who_asked(client, letter, mailbox):
    signed = client.post(
        "/letters/test-letter/sign",
        data={"csrftoken": letter_csrf(client), "email": "ana@github.com", "show_name": "0"},
        headers=SPANISH,
        follow_redirects=False,
    )
    assert signed.status_code == 303
    check = client.get(signed.headers["location"], headers=SPANISH).text
    assert "Confirme su dirección de correo electrónico" in check  # the subject it names
    mailbox.wait_for(1)
    email = mailbox.messages[-1]
    assert subject(email) == "Confirme su dirección de correo electrónico"
    text = mailbox.text_of(email)
    assert text.startswith("Hola:")
    assert "El enlace funciona una sola vez y caduca en 24 horas." in text
    html = email.get_body(preferencelist=("html",)).get_content()
    assert '<html lang="es">' in html
    assert "pulse el botón de la página" in html
    confirm = client.get(f"/verify/{mailbox.last_token()}", headers=SPANISH)
    assert "Confirme su firma" in confirm.text

    sign_api(client, "bob@github.com")  # the API: English
    mailbox.wait_for(2)
    assert subject(mailbox.messages[-1]) == "Confirm your email address"
    assert mailbox.text_of(mailbox.messages[-1]).startswith("Hello,")


def test_a_subject_an_instance_chose_is_kept_as_it_is(settings, letter, mailbox):
    settings.mail_subject = "Your code"
    with TestClient(create_app(settings)) as client:
        client.post(
            "/letters/test-letter/sign",
            data={"csrftoken": letter_csrf(client), "email": "ana@github.com"},
            headers=SPANISH,
        )
        mailbox.wait_for(1)
    assert subject(mailbox.messages[-1]) == "Your code"
    assert mailbox.text_of(mailbox.messages[-1]).startswith("Hola:")


def test_author_pages_and_emails_are_translated(client, engine, mailbox):
    client.cookies.set("lang", "es")
    sign_in_as(client, engine, "owner@example.org")
    dashboard = client.get("/authors")
    assert "Sus cartas" in dashboard.text
    assert "Empezar una carta nueva" in dashboard.text
    refused = post_form(client, "/authors/letters/new", {"title": "", "action": "save"})
    assert refused.status_code == 422
    assert "Ponga un título a la carta." in refused.text
    client.cookies.clear()
    client.cookies.set("lang", "es")
    asked = post_form(client, "/authors/sign-in", {"email": "owner@example.org"})
    assert asked.status_code == 303
    mailbox.wait_for(1)
    assert subject(mailbox.messages[-1]) == "Inicie sesión en Cartas"


# --- caches ---------------------------------------------------------------------------------


def test_cached_pages_are_kept_per_language(settings, letter):
    settings.cache_seconds = 30
    app = create_app(settings)
    with TestClient(app) as client:
        for path in PAGES[:7]:
            for _ in range(2):
                assert page_language(client.get(path).text) == "en", path
                assert page_language(client.get(path, headers=SPANISH).text) == "es", path
        first = client.get("/letters/test-letter", headers=SPANISH)
        assert first.url.path == "/es/letters/test-letter"
        again = client.get(
            "/letters/test-letter", headers={**SPANISH, "If-None-Match": first.headers["etag"]}
        )
        assert again.status_code == 304
        assert again.headers["content-language"] == "es"
        english = client.get(
            "/letters/test-letter", headers={"If-None-Match": first.headers["etag"]}
        )
        assert english.status_code == 200  # another language, another ETag


def test_error_pages_are_translated_even_a_server_error(settings):
    app = create_app(settings)

    async def broken(request: Any) -> Any:
        raise RuntimeError("a bug")

    app.router.routes.append(Route("/broken", broken))
    with TestClient(app, raise_server_exceptions=False) as client:
        missing = client.get("/letters/no-such-letter", headers=SPANISH)
        assert missing.status_code == 404
        assert "No hay nada en esta dirección." in missing.text
        wrong_method = client.put("/letters/no-such-letter", headers=SPANISH)
        assert wrong_method.status_code == 405
        assert "Esta dirección no admite ese tipo de petición." in wrong_method.text
        # Answered outside the middleware that chose the language, from what it recorded.
        failed = client.get("/broken", headers=SPANISH)
        assert failed.status_code == 500
        assert '<html lang="es">' in failed.text
        assert "Algo ha fallado por nuestra parte." in failed.text
        assert "Something went wrong" in client.get("/broken").text
