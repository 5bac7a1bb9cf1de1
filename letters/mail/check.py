"""`letters mail-check`: what this machine can tell about whether the site's mail will be
trusted. The sending settings, a sample confirmation email as it would leave (its headers,
its DKIM signature), and the DNS records receiving servers weigh above everything else:
SPF, DKIM and DMARC for MAIL_FROM's domain (and DELIVERY_FROM's), and their alignment.

Each finding is `ok`, `warn` (worth fixing), `FAIL` (mail would likely go to spam, or
nowhere) or `skip` (not checked: DNS could not be reached). Nothing here writes anything;
`--send-to` hands the sample to the mail server, the only way to see the whole path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from typing import TextIO

import dkim
import dns.exception
import dns.resolver

from letters.mail import compose
from letters.mail.backend import (
    MailError,
    Message,
    aligned,
    domain_of,
    make_backend,
    wire,
)
from letters.settings import Settings

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
SAMPLE_TO = "signer@example.com"


class Unreachable(Exception):
    """DNS could not be asked (no resolver, timeout, servers failing)."""


@dataclass(frozen=True)
class Finding:
    level: str
    text: str
    advice: str = ""


@dataclass
class Report:
    sections: list[tuple[str, list[Finding]]] = field(default_factory=list)

    def section(self, title: str) -> list[Finding]:
        findings: list[Finding] = []
        self.sections.append((title, findings))
        return findings

    def count(self, level: str) -> int:
        return sum(f.level == level for _, found in self.sections for f in found)

    @property
    def exit_code(self) -> int:
        """1 when mail would likely go to spam; 2 when that could not be checked; else 0."""
        if self.count(FAIL):
            return 1
        return 2 if self.count(SKIP) else 0


def parse_server(server: str) -> tuple[str, int]:
    """ "1.1.1.1", "127.0.0.1:5353" or "[::1]:5353" -> (address, port)."""
    host, port = server, "53"
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif server.count(":") == 1:
        host, _, port = server.partition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a DNS server address: {server!r}")
    return host, int(port)


def make_resolver(server: str | None, lifetime: float = 5.0) -> dns.resolver.Resolver:
    """The system's resolver, or the DNS server `server` (see `parse_server`)."""
    if server:
        host, port = parse_server(server)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    else:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            raise Unreachable("no DNS resolver is configured on this machine") from None
    resolver.lifetime = lifetime
    resolver.use_edns(0, 0, 1232)
    return resolver


class Lookup:
    """TXT lookups: the records' texts, [] when the name has none."""

    def __init__(self, resolver: dns.resolver.Resolver) -> None:
        self.resolver = resolver

    def txt(self, name: str) -> list[str]:
        try:
            answer = self.resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.resolver.NoNameservers:
            raise Unreachable(f"the DNS servers failed to answer for {name}") from None
        except dns.exception.Timeout:
            raise Unreachable("DNS timed out") from None
        except dns.exception.DNSException as error:
            raise Unreachable(type(error).__name__) from None
        return [b"".join(rdata.strings).decode(errors="replace") for rdata in answer]

    def for_dkimpy(self, name: bytes, timeout: int = 5) -> bytes | None:
        found = self.txt(name.decode().rstrip("."))
        return found[0].encode() if found else None


def tags(record: str) -> dict[str, str]:
    """A DKIM or DMARC record's tags: "v=DMARC1; p=none" -> {"v": "DMARC1", "p": "none"}."""
    pairs = (part.partition("=") for part in record.split(";"))
    return {key.strip().lower(): value.strip() for key, _, value in pairs if key.strip()}


def sample(settings: Settings) -> Message:
    return compose.signing_email(settings)(SAMPLE_TO, "SAMPLE-NOT-A-LINK")


def check_settings(settings: Settings, out: list[Finding]) -> None:
    domain = settings.sender_domain
    out.append(Finding(OK, f"MAIL_FROM: {settings.sender}"))
    if "." not in domain or domain.endswith((".local", ".localhost", ".test", ".invalid")):
        out.append(
            Finding(
                FAIL,
                f"MAIL_FROM is at {domain!r}: receiving servers cannot check such a sender.",
                "Send from an address at a domain you control, with SPF, DKIM and DMARC.",
            )
        )
    smtp = settings.smtp
    if smtp is None:
        out.append(Finding(WARN, "SMTP_URL is not set: emails are printed, not sent."))
    else:
        tls = "TLS" if smtp.use_tls else "STARTTLS" if smtp.start_tls else "STARTTLS if offered"
        tls = "no TLS" if smtp.start_tls is False and not smtp.use_tls else tls
        login = ", with a login" if smtp.username else ""
        out.append(Finding(OK, f"SMTP_URL: {smtp.host}:{smtp.port} ({tls}{login})"))
    signer = settings.dkim
    if signer is None:
        out.append(
            Finding(
                WARN,
                "DKIM: this site does not sign (no DKIM_SELECTOR).",
                f"Fine if the relay at SMTP_URL signs as {domain} (SES, Postmark and most "
                "providers do once the domain is set up with them); otherwise set DKIM_*.",
            )
        )
    elif not aligned(domain, signer.domain):
        out.append(
            Finding(
                FAIL,
                f"DKIM_DOMAIN {signer.domain} does not cover MAIL_FROM's domain {domain}: "
                "the site's mail goes unsigned.",
                f"Set DKIM_DOMAIN to {domain} (or to the domain it is under).",
            )
        )
    else:
        out.append(Finding(OK, f"DKIM: signing as {signer.domain}, selector {signer.selector}"))
    if settings.delivery_from:
        out.append(Finding(OK, f"DELIVERY_FROM: {settings.delivery_from}"))
        delivery_domain = domain_of(settings.delivery_from)
        if signer is None or not aligned(delivery_domain, signer.domain):
            out.append(
                Finding(
                    WARN,
                    f"Deliveries from {delivery_domain} are not DKIM-signed here.",
                    f"The relay at DELIVERY_SMTP_URL (else SMTP_URL) must sign as "
                    f"{delivery_domain}.",
                )
            )


def check_message(settings: Settings, data: bytes, out: list[Finding]) -> None:
    email = message_from_bytes(data, policy=policy.default)
    domain = settings.sender_domain
    message_id = str(email.get("Message-ID", ""))
    found = {
        "Date": bool(email["Date"]),
        f"Message-ID on {domain}": message_id.rstrip(">").endswith("@" + domain_of("@" + domain)),
        "Auto-Submitted: auto-generated": email["Auto-Submitted"] == "auto-generated",
        "a plain-text part": email.get_body(preferencelist=("plain",)) is not None,
    }
    for what, present in found.items():
        out.append(Finding(OK if present else FAIL, f"{'has' if present else 'lacks'} {what}"))
    subject = str(email["Subject"] or "")
    out.append(Finding(OK, f"Subject: {subject}"))
    signed = email["DKIM-Signature"] is not None
    if settings.dkim is not None:
        out.append(Finding(OK if signed else FAIL, "DKIM-signed" if signed else "not DKIM-signed"))


def check_domain(lookup: Lookup, domain: str, what: str, out: list[Finding]) -> dict[str, str]:
    """SPF and DMARC of one sending domain; the DMARC record's tags ({} if none)."""
    spf = [r for r in lookup.txt(domain) if r.lower().startswith("v=spf1")]
    if not spf:
        out.append(
            Finding(
                FAIL,
                f"SPF ({what}): no record at {domain}",
                f'Publish a TXT record at {domain}: "v=spf1 include:<your provider> -all" '
                "(your mail provider says what to include).",
            )
        )
    elif len(spf) > 1:
        out.append(
            Finding(FAIL, f"SPF ({what}): {len(spf)} records at {domain}", "Merge them into one.")
        )
    else:
        record = spf[0]
        policy_ = record.split()[-1].lower()
        if policy_ in ("+all", "all"):
            out.append(
                Finding(
                    FAIL, f"SPF ({what}): {record}", "'+all' lets anyone send as you: use '-all'."
                )
            )
        elif policy_ not in ("-all", "~all") and "redirect=" not in record:
            out.append(
                Finding(
                    WARN,
                    f"SPF ({what}): {record}",
                    "End it with '-all' (or '~all'), so that others cannot send as you.",
                )
            )
        else:
            out.append(Finding(OK, f"SPF ({what}): {record}"))
    return check_dmarc(lookup, domain, what, out)


def check_dmarc(lookup: Lookup, domain: str, what: str, out: list[Finding]) -> dict[str, str]:
    """The DMARC record at _dmarc.DOMAIN, else at the domains it is under."""
    labels = domain.split(".")
    for start in range(max(len(labels) - 1, 1)):
        name = "_dmarc." + ".".join(labels[start:])
        records = [r for r in lookup.txt(name) if r.lower().startswith("v=dmarc1")]
        if len(records) > 1:
            out.append(Finding(FAIL, f"DMARC ({what}): {len(records)} records at {name}"))
            return {}
        if records:
            found = tags(records[0])
            if found.get("p", "").lower() not in ("none", "quarantine", "reject"):
                out.append(Finding(FAIL, f"DMARC ({what}): no valid p= in {records[0]}"))
            elif found["p"].lower() == "none":
                out.append(
                    Finding(
                        OK,
                        f"DMARC ({what}): {records[0]}",
                        "p=none: receivers report but do not act. Once the reports (rua=) "
                        "show only your own mail passing, move to p=quarantine.",
                    )
                )
            else:
                out.append(Finding(OK, f"DMARC ({what}): {records[0]}"))
            return found
    out.append(
        Finding(
            FAIL,
            f"DMARC ({what}): no record at _dmarc.{domain}",
            f'Publish a TXT record at _dmarc.{domain}: "v=DMARC1; p=none; '
            f'rua=mailto:postmaster@{domain}" to start.',
        )
    )
    return {}


def check_dkim_dns(settings: Settings, lookup: Lookup, data: bytes, out: list[Finding]) -> None:
    signer = settings.dkim
    if signer is None:
        return
    published = [r for r in lookup.txt(signer.record_name) if "p=" in r]
    advice = f'Publish a TXT record at {signer.record_name}: "{signer.record}"'
    if not published:
        out.append(Finding(FAIL, f"DKIM: no key at {signer.record_name}", advice))
        return
    key = "".join(tags(published[0]).get("p", "").split())
    if not key:
        out.append(Finding(FAIL, f"DKIM: the key at {signer.record_name} is revoked", advice))
    elif key != signer.public_key:
        out.append(
            Finding(
                FAIL,
                f"DKIM: the key at {signer.record_name} is not the key this site signs with",
                advice,
            )
        )
    elif data.startswith(b"DKIM-Signature:") and dkim.verify(data, dnsfunc=lookup.for_dkimpy):
        out.append(Finding(OK, f"DKIM: the sample's signature verifies ({signer.record_name})"))
    else:
        out.append(Finding(FAIL, "DKIM: the sample's signature does not verify"))


def check_alignment(settings: Settings, dmarc: dict[str, str], out: list[Finding]) -> None:
    signer = settings.dkim
    if signer is None:
        return
    domain = settings.sender_domain
    strict = dmarc.get("adkim", "r").lower() == "s"
    if strict and signer.domain != domain:
        out.append(
            Finding(
                FAIL,
                f"DMARC asks for strict DKIM alignment (adkim=s), and the signing domain "
                f"{signer.domain} is not {domain}.",
                f"Set DKIM_DOMAIN to {domain}.",
            )
        )
    elif aligned(domain, signer.domain):
        out.append(Finding(OK, f"DKIM domain {signer.domain} aligns with MAIL_FROM's {domain}"))


def run(settings: Settings, resolver: Callable[[], dns.resolver.Resolver]) -> Report:
    """Every check; DNS ones are skipped (and said so) when DNS cannot be reached."""
    report = Report()
    check_settings(settings, report.section("Sending settings"))
    _, data, _ = wire(sample(settings), settings.sender, settings.dkim)
    check_message(settings, data, report.section("The sample confirmation email"))
    found = report.section("DNS")
    try:
        lookup = Lookup(resolver())
        dmarc = check_domain(lookup, settings.sender_domain, "MAIL_FROM", found)
        check_dkim_dns(settings, lookup, data, found)
        check_alignment(settings, dmarc, found)
        if settings.delivery_from:
            check_domain(lookup, domain_of(settings.delivery_from), "DELIVERY_FROM", found)
    except Unreachable as error:
        found.append(
            Finding(
                SKIP,
                f"DNS could not be reached ({error}): SPF, DKIM and DMARC were not checked.",
                "Run this again where DNS works, or name a DNS server with --dns.",
            )
        )
    return report


def send_sample(settings: Settings, to: str) -> Finding:
    """Hand the sample confirmation email, addressed to `to`, to the site's mail server."""
    message = compose.signing_email(settings)(to, "SAMPLE-NOT-A-LINK")
    try:
        asyncio.run(make_backend(settings).send(message))
    except MailError as error:
        return Finding(
            FAIL,
            f"The mail server refused the sample: {error}",
            "A 5.7.x code usually means it distrusts this sender; check the findings above.",
        )
    if settings.smtp is None:
        return Finding(WARN, "SMTP_URL is not set: the sample was printed above, not sent.")
    return Finding(
        OK,
        f"The mail server accepted the sample for {to}.",
        "Look for it in that mailbox, and in its spam or quarantine folder. Its link is a "
        "sample: it leads nowhere.",
    )


def print_report(report: Report, stream: TextIO) -> None:
    for title, findings in report.sections:
        print(title, file=stream)
        for finding in findings:
            print(f"  {finding.level:<5} {finding.text}", file=stream)
            if finding.advice:
                print(f"        {finding.advice}", file=stream)
        print(file=stream)
    failures = report.count(FAIL)
    if failures:
        print(
            f"{failures} problem{'s' if failures != 1 else ''} would likely send mail to spam.",
            file=stream,
        )
    elif report.count(SKIP):
        print("No problem found, but DNS was not checked.", file=stream)
    else:
        print("No problem found.", file=stream)
