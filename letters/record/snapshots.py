"""Signed snapshots: a letter's counts and ledger head, signed with the instance's key.

The signing key is derived from SECRET_KEY (HKDF), so every worker on every host signs
with the same key without sharing a key file, and rotating SECRET_KEY rotates it. The
public key is published at /.well-known/jwks.json, with those derived from OLD_SECRET_KEYS
(each named by its thumbprint, the `kid` of the snapshots it signed), so snapshots signed
before a key change still verify. Snapshots are compact JWS (ES256)
whose payload is JSON, so any JOSE library can check them; `letters verify-ledger` does.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from letters.models import Letter
from letters.record.public import Tally

ALGORITHM = "ES256"
TYPE = "letters-snapshot+jwt"
# The order of the P-256 group: a private key is a number in [1, n - 1].
P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551


def signing_key(secret_key: str) -> ECKey:
    """The instance's P-256 key, the same in every process that has this SECRET_KEY."""
    seed = HKDF(
        algorithm=hashes.SHA256(), length=48, salt=None, info=b"letters snapshot signing key v1"
    ).derive(secret_key.encode())
    private = ec.derive_private_key(
        int.from_bytes(seed, "big") % (P256_ORDER - 1) + 1, ec.SECP256R1()
    )
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return ECKey.import_key(pem)


def public_jwks(key: ECKey, older: Sequence[ECKey] = ()) -> dict[str, Any]:
    """The key set to check snapshots with: the current key first, then earlier ones."""
    published = []
    for each in (key, *older):
        public = each.as_dict(private=False)
        public.update(kid=each.thumbprint(), use="sig", alg=ALGORITHM)
        published.append(public)
    return {"keys": published}


def sign(key: ECKey, payload: dict[str, Any]) -> str:
    header = {"alg": ALGORITHM, "typ": TYPE, "kid": key.thumbprint()}
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return jws.serialize_compact(header, body.encode(), key)


def issued_now() -> int:
    return int(time.time())


def iso(moment: datetime | None) -> str | None:
    """UTC, to the second."""
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z") if moment else None


def payload(base_url: str, letter: Letter, counts: Tally) -> dict[str, Any]:
    """What a snapshot signs: a letter's counts and its ledger's length and head, now."""
    return {
        "iss": base_url,
        "iat": issued_now(),
        "sub": f"{base_url}/letters/{letter.slug}",
        "letter": letter.slug,
        "title": letter.title,
        "status": letter.status,
        "verified_count": counts.verified,
        "named_count": counts.named,
        "hidden_count": counts.hidden,
        "organizations": [{"name": name, "count": count} for name, count in counts.organizations],
        "as_of": iso(counts.updated_at),
        "ledger": {"length": letter.ledger_length, "head": letter.ledger_head},
    }


class SnapshotError(Exception):
    """A snapshot that does not verify; the message says why."""


def verify(token: str, jwks: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Check a snapshot's signature against a JWKS; return (header, payload)."""
    try:
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError, KeyError) as error:
        raise SnapshotError(f"the key set is not valid: {error}") from None
    try:
        result = jws.deserialize_compact(token.strip(), keys, algorithms=[ALGORITHM])
    except JoseError as error:
        raise SnapshotError(f"the signature does not verify ({error.error})") from None
    except (ValueError, TypeError, KeyError):
        raise SnapshotError("this is not a signed snapshot (compact JWS)") from None
    try:
        payload = json.loads(result.payload)
    except ValueError:
        raise SnapshotError("the signed payload is not JSON") from None
    if not isinstance(payload, dict):
        raise SnapshotError("the signed payload is not a JSON object")
    return dict(result.protected), payload
