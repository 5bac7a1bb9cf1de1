"""Sealed values: what must be kept a while but never readable on disk (queued emails).

A value is sealed with AES-256-GCM under a key derived from a secret key with HKDF, one
key per purpose, derived once per process (`keyring` is cached). Each value gets a fresh
96-bit nonce, and associated data that binds it to its row (an id chosen in code before
the row is written, so no round trip is needed to learn it): a sealed value copied into
another row, or into another column, does not open. A sealed value is text:
`<key id>.<base64url(nonce + ciphertext)>`; the key id names the secret it was sealed
under (it is a hash of that secret, and tells nothing about it), so after SECRET_KEY
changes, values sealed under a key listed in OLD_SECRET_KEYS still open. A value sealed
under a key no longer listed raises `Unsealable`, and its caller drops it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from functools import cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 12
OUTBOX = "outbox"
NAMES = "names"


class Unsealable(Exception):
    """A sealed value that no active key opens (its key was retired, or it was altered)."""


def key_id(secret: str) -> str:
    """A short public name for a secret key: it identifies the key, and reveals nothing."""
    return hmac.new(secret.encode(), b"letters key id", hashlib.sha256).hexdigest()[:8]


class Keyring:
    """The current secret key (which seals) and older ones (which still open)."""

    def __init__(self, current: str, older: tuple[str, ...] = ()) -> None:
        self.current = current
        self.older = tuple(secret for secret in older if secret != current)
        self.secrets = {key_id(secret): secret for secret in (*older, current)}
        self.current_id = key_id(current)
        self._ciphers: dict[tuple[str, str], AESGCM] = {}

    def _cipher(self, kid: str, purpose: str) -> AESGCM:
        cipher = self._ciphers.get((kid, purpose))
        if cipher is None:
            key = HKDF(
                algorithm=hashes.SHA256(),
                length=32,
                salt=None,
                info=f"letters sealing v1 {purpose}".encode(),
            ).derive(self.secrets[kid].encode())
            cipher = self._ciphers[(kid, purpose)] = AESGCM(key)
        return cipher

    def seal(self, purpose: str, plaintext: bytes, bound_to: str) -> str:
        """Seal `plaintext` under the current key, bound to `bound_to` (its row)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._cipher(self.current_id, purpose).encrypt(nonce, plaintext, bound_to.encode())
        return f"{self.current_id}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def open(self, purpose: str, sealed: str, bound_to: str) -> bytes:
        """The plaintext of a value `seal` made for the same purpose and row; Unsealable."""
        kid, _, body = sealed.partition(".")
        if kid not in self.secrets:
            raise Unsealable(f"no active key {kid!r}")
        try:
            raw = base64.urlsafe_b64decode(body.encode())
            return self._cipher(kid, purpose).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], bound_to.encode()
            )
        except (InvalidTag, ValueError):
            raise Unsealable("altered, or bound to another row") from None

    def sealed_under_current(self, sealed: str) -> bool:
        return sealed.partition(".")[0] == self.current_id


@cache
def keyring(current: str, older: tuple[str, ...] = ()) -> Keyring:
    """The keyring of these secrets, built once per process."""
    return Keyring(current, older)
