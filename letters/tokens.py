"""Signed tokens (one salt per purpose) and keyed hashes derived from the secret key.

Magic links are made and read in letters.record.links; this module holds the serializers
they and the CSRF tokens and page cursors use, the keyed hashes, and the errors a token can
give.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from itsdangerous import BadSignature, URLSafeSerializer, URLSafeTimedSerializer

from letters.i18n import gettext

CSRF = "csrf"
CURSOR = "cursor"


class TokenError(Exception):
    """A token that cannot be used; `code` is `invalid_token` or `expired_token`.

    `message` is for the person holding the link, translated where it is made.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LinkUsed(TokenError):
    """The link was already used (its signature may well be verified)."""

    def __init__(self) -> None:
        super().__init__("invalid_token", gettext("This link has already been used."))


class Signer:
    """All signing and keyed hashing for one secret key.

    Tokens are signed with `secret_key` and accepted when signed with it or with one of
    `older` (OLD_SECRET_KEYS), so links and cookies made before a key change still work.
    Keyed hashes use `secret_key` only; letters.record.rekey matches older ones.
    """

    def __init__(self, secret_key: str, older: tuple[str, ...] = ()) -> None:
        self._secret = secret_key
        # itsdangerous signs with the last key and accepts any of them.
        self._secrets = [*older, secret_key]
        # Serializers derive their keys when built; the letter page signs a CSRF token on
        # every read, so each purpose gets one, built once (measured in bench/read.py).
        self._timed: dict[str, URLSafeTimedSerializer] = {}
        self._untimed: dict[str, URLSafeSerializer] = {}

    def _derived_key(self, purpose: str) -> bytes:
        return hmac.new(self._secret.encode(), purpose.encode(), hashlib.sha256).digest()

    def email_hash(self, canonical_email: str) -> str:
        """Keyed HMAC of a normalized address: dedup without keeping the address."""
        key = self._derived_key("email-hash")
        return hmac.new(key, canonical_email.encode(), hashlib.sha256).hexdigest()

    def key_hash(self, purpose: str, value: str) -> str:
        """Keyed hash for rate-limit keys and the like (IPs, domains)."""
        key = self._derived_key(f"key:{purpose}")
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:40]

    def timed(self, salt: str) -> URLSafeTimedSerializer:
        if salt not in self._timed:
            self._timed[salt] = URLSafeTimedSerializer(self._secrets, salt=salt)
        return self._timed[salt]

    def untimed(self, salt: str) -> URLSafeSerializer:
        if salt not in self._untimed:
            self._untimed[salt] = URLSafeSerializer(self._secrets, salt=salt)
        return self._untimed[salt]

    def dumps_cursor(self, value: int) -> str:
        return self.untimed(CURSOR).dumps(value)

    def loads_cursor(self, cursor: str) -> int:
        if not cursor.isascii():
            raise ValueError("bad cursor")
        try:
            value = self.untimed(CURSOR).loads(cursor)
        except BadSignature:
            raise ValueError("bad cursor") from None
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("bad cursor")
        return value


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def hash_nonce(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()
