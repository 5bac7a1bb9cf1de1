"""Settings read from the environment (and an optional `.env` file)."""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass, field
from email.utils import formataddr, parseaddr
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from letters.i18n import N_
from letters.resources import default_instance_path
from letters.sealing import Keyring, keyring

# The source tree, for the tests and tools that read it; the files the app reads at run time
# are found through letters.resources (a wheel carries them inside the package).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
SECRET_FILE = "secret_key"  # noqa: S105 (a file name)
OLD_SECRETS_FILE = "old_secret_keys"
PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "dev", "development"}


class SMTPConfig(BaseModel):
    """Where and how to send mail, parsed from `SMTP_URL`."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None
    use_tls: bool = False
    start_tls: bool | None = None  # None: upgrade when the server offers STARTTLS
    timeout: float = 10.0


def parse_smtp_url(url: str) -> SMTPConfig:
    """Parse `smtp://[user:pass@]host[:port][?starttls=require|off]` or `smtps://...`."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("SMTP_URL must look like smtp://[user:pass@]host:port or smtps://...")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    use_tls = parts.scheme == "smtps"
    start_tls: bool | None = None
    mode = query.get("starttls", "").lower()
    if mode in ("require", "true", "1", "yes"):
        start_tls = True
    elif mode in ("off", "false", "0", "no"):
        start_tls = False
    elif mode:
        raise ValueError("SMTP_URL starttls must be 'require' or 'off'")
    if use_tls:
        start_tls = False
    return SMTPConfig(
        host=parts.hostname,
        port=parts.port or (465 if use_tls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        use_tls=use_tls,
        start_tls=start_tls,
        timeout=float(query.get("timeout", 10)),
    )


# A DNS name in ASCII: labels of letters, digits, hyphens and underscores.
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?"
DNS_NAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*")


@dataclass(frozen=True)
class DKIMConfig:
    """What signs outgoing mail: the key as PKCS#1 PEM (what dkimpy reads), and the
    public key as published in DNS (`p=`, base64 of the DER SubjectPublicKeyInfo)."""

    selector: str
    domain: str
    private_pem: bytes = field(repr=False)
    public_key: str

    @classmethod
    def from_pem(cls, pem: bytes, selector: str, domain: str) -> DKIMConfig:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            raise ValueError("the DKIM private key is not an unencrypted PEM key") from None
        if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < 1024:
            raise ValueError("the DKIM private key must be an RSA key of 1024 bits or more")
        private_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        public_der = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return cls(selector, domain, private_pem, base64.b64encode(public_der).decode())

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def record(self) -> str:
        """The TXT record to publish at `record_name`."""
        return f"v=DKIM1; k=rsa; p={self.public_key}"


class Settings(BaseSettings):
    """Every setting of an instance. Each one is documented in README.md."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    database_url: str = ""
    secret_key: str = ""
    # Earlier secret keys, comma-separated: what they sealed still opens, what they keyed
    # still matches, until `letters rotate-key` has moved everything to SECRET_KEY.
    old_secret_keys: str = ""
    base_url: str = "http://127.0.0.1:8000"
    smtp_url: str = ""
    mail_from: str = "Letters <no-reply@localhost>"
    # What a work mailbox's owner (often the employer) sees of our emails: keep it neutral.
    # The default subjects are translated into the signer's language; others are kept as set.
    mail_from_name: str | None = Field(default=None, max_length=100)
    mail_subject: str = Field(
        default=N_("Confirm your email address"), min_length=1, max_length=200
    )
    mail_manage_subject: str = Field(
        default=N_("Your requested link"), min_length=1, max_length=200
    )
    mail_in_app: bool = True
    # Seconds between the runs that turn manage and author sign-in requests into emails (or
    # into nothing): on a fixed beat, so a request's timing never tells who signed.
    mail_job_seconds: float = Field(default=1.0, gt=0, le=60)
    # DKIM signing where this site hands mail to the recipients' servers itself (a relay
    # such as SES or Postmark usually signs instead): a selector and an RSA private key.
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_private_key: str = ""
    dkim_private_key_file: str = ""
    # Admins get an email when this many messages failed within an hour (at most daily).
    mail_alert_failures: int = Field(default=20, gt=0)
    # A letter's delivery to its recipient goes from this other address (the authors choose
    # the display name and Reply-To), through DELIVERY_SMTP_URL if set, else SMTP_URL.
    delivery_from: str = ""
    delivery_smtp_url: str = ""
    instance_path: Path = Field(default_factory=default_instance_path)
    link_max_age: int = Field(default=24 * 3600, gt=0)
    limit_window: int = Field(default=3600, gt=0)
    limit_per_address: int = Field(default=5, gt=0)
    limit_per_ip: int = Field(default=500, gt=0)
    # Not a cap: past this (and the domain's confirmations), a domain counts as flooded.
    limit_per_domain: int = Field(default=500, gt=0)
    max_body_bytes: int = Field(default=64 * 1024, gt=0)
    # Seconds a request body may stall between parts before it is answered 408.
    body_read_timeout: float = Field(default=10.0, gt=0)
    # Live count streams (Server-Sent Events) one process serves at once; beyond, 503.
    event_streams_max: int = Field(default=2000, gt=0)
    cache_seconds: float = Field(default=0.5, ge=0)
    access_log: bool = True
    # Connections a process keeps open, and how many more it may open for a moment. No
    # overflow by default: a connection opened for a spike is closed when returned to a
    # full pool, and under a signing storm that churn (a new PostgreSQL backend every
    # ~40 ms per process) cost more than waiting for a pooled one (docs/benchmarks.md).
    db_pool_size: int = Field(default=20, gt=0)
    db_max_overflow: int = Field(default=0, ge=0)
    # Seconds after which a PostgreSQL connection is replaced when next taken from the pool.
    db_pool_recycle: int = Field(default=300, gt=0)
    # Authors' single sign-on (letters.web.oidc); all three, or none.
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: str = ""

    @field_validator("base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("mail_from_name", "mail_subject", "mail_manage_subject")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and any(char in value for char in "\r\n\x00"):
            raise ValueError("must be a single line")
        return value

    @field_validator("smtp_url", "delivery_smtp_url")
    @classmethod
    def _check_smtp(cls, value: str) -> str:
        if value:
            parse_smtp_url(value)
        return value

    @field_validator("delivery_from")
    @classmethod
    def _check_delivery_from(cls, value: str) -> str:
        if not value:
            return value
        address = parseaddr(value)[1]
        if "@" not in address or any(char in value for char in "\r\n\x00"):
            raise ValueError("DELIVERY_FROM must be an email address")
        return address

    @model_validator(mode="after")
    def _check_senders(self) -> Settings:
        site = (parseaddr(self.mail_from)[1] or self.mail_from).lower()
        if self.delivery_from and self.delivery_from.lower() == site:
            raise ValueError(
                "DELIVERY_FROM must be another address than MAIL_FROM: deliveries must not "
                "come from the sender of signing links"
            )
        return self

    @field_validator("dkim_selector", "dkim_domain")
    @classmethod
    def _check_dns_label(cls, value: str) -> str:
        value = value.strip().lower().rstrip(".")
        if value and not DNS_NAME.fullmatch(value):
            raise ValueError("must be a DNS name such as 'mail2026' or 'example.org'")
        return value

    @model_validator(mode="after")
    def _check_dkim(self) -> Settings:
        if self.dkim_private_key and self.dkim_private_key_file:
            raise ValueError("set DKIM_PRIVATE_KEY or DKIM_PRIVATE_KEY_FILE, not both")
        keyed = bool(self.dkim_private_key or self.dkim_private_key_file)
        if keyed != bool(self.dkim_selector):
            raise ValueError("set DKIM_SELECTOR and a DKIM private key together, or neither")
        if keyed and self.dkim is None:  # reads and checks the key now, not at the first email
            raise ValueError("DKIM_SELECTOR is required")
        return self

    @model_validator(mode="after")
    def _check_oidc(self) -> Settings:
        given = [bool(self.oidc_issuer), bool(self.oidc_client_id), bool(self.oidc_client_secret)]
        if any(given) and not all(given):
            raise ValueError("set OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET together")
        if self.oidc_issuer and not self.oidc_issuer.startswith(("https://", "http://")):
            raise ValueError("OIDC_ISSUER must be the provider's URL")
        if self.environment == "production" and self.oidc_issuer.startswith("http://"):
            raise ValueError("OIDC_ISSUER must use https in production")
        return self

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.instance_path / 'letters.db'}"
        self.database_url = normalize_database_url(self.database_url)
        if self.environment == "production":
            _check_no_key_beside_the_database(self.database_url)
        if not self.secret_key:
            if self.environment == "production":
                raise ValueError("SECRET_KEY must be set in production")
            # Development: a key kept in the instance folder, beside the SQLite database, so
            # one copy of the folder holds both (README: "The key beside the data").
            self.secret_key = _instance_secret(self.instance_path)
            if not self.old_secret_keys:
                self.old_secret_keys = _instance_old_secrets(self.instance_path)
        elif self.environment == "production" and (
            self.secret_key.lower() in PLACEHOLDER_SECRETS or len(self.secret_key) < 32
        ):
            raise ValueError("SECRET_KEY must be a random value of at least 32 characters")
        if self.environment == "production" and not self.smtp_url:
            # The console backend would print addresses and live links to the logs.
            raise ValueError("SMTP_URL must be set in production")
        return self

    @property
    def keys(self) -> Keyring:
        """SECRET_KEY, which seals, and OLD_SECRET_KEYS, which still open (built once)."""
        older = tuple(key.strip() for key in self.old_secret_keys.split(",") if key.strip())
        return keyring(self.secret_key, older)

    @property
    def smtp(self) -> SMTPConfig | None:
        return parse_smtp_url(self.smtp_url) if self.smtp_url else None

    @property
    def sender(self) -> str:
        """The From header: MAIL_FROM, its display name replaced by MAIL_FROM_NAME if set."""
        if self.mail_from_name is None:
            return self.mail_from
        address = parseaddr(self.mail_from)[1] or self.mail_from
        return formataddr((self.mail_from_name, address)) if self.mail_from_name else address

    @property
    def delivery_smtp(self) -> SMTPConfig | None:
        """Where deliveries go out: DELIVERY_SMTP_URL, else the site's SMTP_URL."""
        url = self.delivery_smtp_url or self.smtp_url
        return parse_smtp_url(url) if url else None

    @property
    def sender_domain(self) -> str:
        """The domain of MAIL_FROM's address, lower case."""
        address = parseaddr(self.mail_from)[1] or self.mail_from
        return address.rpartition("@")[2].lower()

    @property
    def dkim(self) -> DKIMConfig | None:
        """The DKIM signing key, selector and domain (DKIM_DOMAIN, else MAIL_FROM's), or None."""
        if not self.dkim_selector:
            return None
        if self.dkim_private_key_file:
            try:
                pem = Path(self.dkim_private_key_file).read_bytes()
            except OSError as error:
                raise ValueError(f"cannot read DKIM_PRIVATE_KEY_FILE: {error.strerror}") from None
        else:
            # Environment variables hold one line: accept "\n" for the key's line breaks.
            pem = self.dkim_private_key.replace("\\n", "\n").encode()
        return DKIMConfig.from_pem(pem, self.dkim_selector, self.dkim_domain or self.sender_domain)

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def async_database_url(self) -> str:
        """The URL with the async driver the app uses."""
        if self.is_sqlite:
            return self.database_url.replace("sqlite://", "sqlite+aiosqlite://", 1)
        return self.database_url

    @property
    def sync_database_url(self) -> str:
        """The URL with a sync driver, for Alembic and the command line."""
        return self.database_url


def normalize_database_url(url: str) -> str:
    """Accept `postgres://` and `postgresql://` as people write them; use psycopg 3."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    if url.startswith("sqlite+aiosqlite://"):
        return "sqlite://" + url[len("sqlite+aiosqlite://") :]
    return url


def _check_no_key_beside_the_database(database_url: str) -> None:
    """Production: refuse a key file in the SQLite database's folder (a copy of the folder
    would hold the data and the key that protects it)."""
    if not database_url.startswith("sqlite:///"):
        return
    folder = Path(database_url.removeprefix("sqlite:///")).parent
    for name in (SECRET_FILE, OLD_SECRETS_FILE):
        if (folder / name).exists():
            raise ValueError(
                f"a key file ({folder / name}) sits beside the database: in production, set "
                "SECRET_KEY (and OLD_SECRET_KEYS) from outside the data folder, and delete "
                "the file"
            )


def _instance_old_secrets(instance_path: Path) -> str:
    path = instance_path / OLD_SECRETS_FILE
    return path.read_text().strip() if path.exists() else ""


def rotate_instance_secret(instance_path: Path, new_key: str) -> tuple[str, str]:
    """Development: make `new_key` the instance's key and keep the old one in
    `instance/old_secret_keys` (newest first); (old key, OLD_SECRET_KEYS as now written)."""
    old = _instance_secret(instance_path)
    older = [key for key in _instance_old_secrets(instance_path).split(",") if key]
    listed = ",".join([old, *older])
    for name, value in ((OLD_SECRETS_FILE, listed), (SECRET_FILE, new_key)):
        path = instance_path / name
        path.write_text(value)
        path.chmod(0o600)
    return old, listed


def _instance_secret(instance_path: Path) -> str:
    """Create once, then reuse, a secret key kept in the local instance folder."""
    path = instance_path / SECRET_FILE
    if path.exists():
        return path.read_text().strip()
    instance_path.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return key
