"""`letters mail-check`, against a DNS zone served on loopback and a real SMTP server."""

from __future__ import annotations

import pytest

from letters.cli import main
from letters.settings import DKIMConfig
from tests.conftest import SECRET, free_port
from tests.dns_server import serving
from tests.mail.test_well_formed import rsa_pem

DOMAIN = "letters.example.org"
PEM = rsa_pem().decode()
KEY = DKIMConfig.from_pem(PEM.encode(), "mail2026", DOMAIN)
GOOD = {
    DOMAIN: ["v=spf1 include:_spf.mailer.example.net -all", "google-site-verification=x"],
    KEY.record_name: [KEY.record],
    f"_dmarc.{DOMAIN}": ["v=DMARC1; p=quarantine; rua=mailto:dmarc@letters.example.org"],
}


@pytest.fixture
def env(monkeypatch, tmp_path, mailbox):
    monkeypatch.setenv("SECRET_KEY", SECRET)
    monkeypatch.setenv("ENVIRONMENT", "test")
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    monkeypatch.setenv("SMTP_URL", mailbox.url)
    monkeypatch.setenv("MAIL_FROM", f"Letters <no-reply@{DOMAIN}>")
    monkeypatch.setenv("DKIM_SELECTOR", "mail2026")
    monkeypatch.setenv("DKIM_PRIVATE_KEY", PEM.replace("\n", "\\n"))
    monkeypatch.chdir(tmp_path)  # no stray .env file
    return monkeypatch


def mail_check(capsys, *args: str) -> tuple[int, str]:
    try:
        main(["mail-check", *args])
    except SystemExit as exit_:
        code = exit_.code
    else:
        code = 0
    output = capsys.readouterr().out
    return int(code or 0) if not isinstance(code, str) else 1, output


def test_a_setup_with_spf_dkim_and_dmarc_passes(env, capsys):
    with serving(GOOD) as zone:
        code, output = mail_check(capsys, "--dns", f"127.0.0.1:{zone.port}")
    assert code == 0, output
    assert "FAIL" not in output
    assert "ok    SPF (MAIL_FROM): v=spf1 include:_spf.mailer.example.net -all" in output
    assert "ok    DKIM: the sample's signature verifies (mail2026._domainkey" in output
    assert "ok    DMARC (MAIL_FROM): v=DMARC1; p=quarantine" in output
    assert "ok    has Auto-Submitted: auto-generated" in output
    assert output.rstrip().endswith("No problem found.")


def test_missing_records_are_named_with_what_to_publish_and_exit_1(env, capsys):
    with serving({DOMAIN: ["v=spf1 +all"]}) as zone:
        code, output = mail_check(capsys, "--dns", f"127.0.0.1:{zone.port}")
    assert code == 1
    assert "FAIL  SPF (MAIL_FROM): v=spf1 +all" in output
    assert f"FAIL  DKIM: no key at mail2026._domainkey.{DOMAIN}" in output
    assert f'Publish a TXT record at mail2026._domainkey.{DOMAIN}: "{KEY.record}"' in output
    assert f"FAIL  DMARC (MAIL_FROM): no record at _dmarc.{DOMAIN}" in output
    assert "3 problems would likely send mail to spam." in output


def test_a_published_key_that_is_not_ours_fails(env, capsys):
    other = DKIMConfig.from_pem(rsa_pem(1024), "mail2026", DOMAIN)
    with serving({**GOOD, KEY.record_name: [other.record]}) as zone:
        code, output = mail_check(capsys, "--dns", f"127.0.0.1:{zone.port}")
    assert code == 1
    assert "is not the key this site signs with" in output


def test_dmarc_is_found_at_the_parent_domain_and_strict_alignment_is_checked(env, capsys):
    env.setenv("DKIM_DOMAIN", "example.org")
    key = DKIMConfig.from_pem(PEM.encode(), "mail2026", "example.org")
    records = {
        DOMAIN: GOOD[DOMAIN],
        key.record_name: [key.record],
        "_dmarc.example.org": ["v=DMARC1; p=none"],
    }
    with serving(records) as zone:
        code, output = mail_check(capsys, "--dns", f"127.0.0.1:{zone.port}")
        assert code == 0, output
        assert "DKIM domain example.org aligns with MAIL_FROM's letters.example.org" in output
        assert "p=none: receivers report but do not act" in output
        zone.records["_dmarc.example.org"] = ["v=DMARC1; p=reject; adkim=s"]
        code, output = mail_check(capsys, "--dns", f"127.0.0.1:{zone.port}")
    assert code == 1
    assert "strict DKIM alignment (adkim=s)" in output


def test_a_dkim_domain_that_does_not_cover_mail_from_fails(env, capsys):
    env.setenv("DKIM_DOMAIN", "elsewhere.example.net")
    with serving(GOOD) as zone:
        code, output = mail_check(capsys, "--dns", f"127.0.0.1:{zone.port}")
    assert code == 1
    assert "does not cover MAIL_FROM's domain letters.example.org" in output
    assert "FAIL  not DKIM-signed" in output


def test_without_dns_it_says_so_and_exits_2(env, capsys):
    code, output = mail_check(capsys, "--dns", f"127.0.0.1:{free_port()}")
    assert code == 2
    assert "DNS could not be reached" in output and "were not checked" in output
    assert "No problem found, but DNS was not checked." in output


def test_send_to_hands_the_sample_to_the_server_and_reports_a_refusal(env, capsys, mailbox):
    with serving(GOOD) as zone:
        dns = f"127.0.0.1:{zone.port}"
        code, output = mail_check(capsys, "--dns", dns, "--send-to", "me@example.net")
        assert code == 0, output
        assert "The mail server accepted the sample for me@example.net." in output
        mailbox.wait_for(1)
        [sample] = mailbox.messages
        assert sample["To"] == "me@example.net" and sample["DKIM-Signature"]
        assert sample["Auto-Submitted"] == "auto-generated"

        mailbox.refuse = "550 5.7.1 <me@example.net> rejected: sender distrusted"
        code, output = mail_check(capsys, "--dns", dns, "--send-to", "me@example.net")
    assert code == 1
    assert "The mail server refused the sample: SMTPDataError 550 5.7.1" in output
    assert "distrusted" not in output


def test_bad_arguments_are_refused_clearly(env, capsys):
    for args in (["--dns", "1.2.3.4:99999"], ["--send-to", "not an address"]):
        with pytest.raises(SystemExit) as exit_:
            main(["mail-check", *args])
        assert exit_.value.code == 2
        assert "mail-check: error: argument" in capsys.readouterr().err


def test_delivery_sender_records_are_checked_too(env, capsys):
    env.setenv("DELIVERY_FROM", "deliveries@delivery.example.net")
    records = {**GOOD, "delivery.example.net": ["v=spf1 include:_spf.other.example -all"]}
    with serving(records) as zone:
        code, output = mail_check(capsys, "--dns", f"127.0.0.1:{zone.port}")
    assert code == 1
    assert "ok    SPF (DELIVERY_FROM): v=spf1 include:_spf.other.example -all" in output
    assert "FAIL  DMARC (DELIVERY_FROM): no record at _dmarc.delivery.example.net" in output
    assert "warn  Deliveries from delivery.example.net are not DKIM-signed here." in output
