"""Names at rest: a signer's name and title are readable in the database only while public.

A signature that shows its name keeps it in `name` and `title`, in clear (the public page
shows them anyway). A hidden one keeps them sealed in `sealed_name` (letters.sealing),
bound to the signature's letter and address hash, and `name` and `title` empty. A pending
signature always keeps them sealed, bound to its link's nonce hash: nothing it holds is
public yet. They are opened only where the code needs them: when a reveal threshold is
reached, when the signer chooses to show their name or changes it (a second confirmation,
a manage link), and to show the signer their own pending signature before they confirm
it. Moderation, retention and export read no hidden name.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from letters.models import PendingSignature, Signature
from letters.sealing import NAMES, Keyring, Unsealable

logger = logging.getLogger("letters.record.names")


def of_signature_row(letter_id: int, email_hash: str) -> str:
    """What a signature's sealed name is bound to: its row's unique key."""
    return f"signature:{letter_id}:{email_hash}"


def of_pending_row(nonce_hash: str) -> str:
    return f"pending:{nonce_hash}"


def seal(keys: Keyring, name: str, title: str, bound_to: str) -> str:
    """Name and title sealed together ("" when there is neither)."""
    if not (name or title):
        return ""
    plain = json.dumps([name, title], ensure_ascii=False).encode()
    return keys.seal(NAMES, plain, bound_to)


def unseal(keys: Keyring, sealed: str, bound_to: str) -> tuple[str, str]:
    """Name and title; empty when none was kept, or when no active key opens them (a key
    retired before `letters rotate-key` moved them to the current one: they are lost)."""
    if not sealed:
        return "", ""
    try:
        name, title = json.loads(keys.open(NAMES, sealed, bound_to))
    except Unsealable:
        logger.warning("a hidden name no active key opens was skipped")
        return "", ""
    return str(name), str(title)


def signature_columns(
    keys: Keyring, letter_id: int, email_hash: str, show_name: bool, name: str, title: str
) -> dict[str, Any]:
    """`name`, `title` and `sealed_name` of a signature shown (or not) as `show_name`."""
    if show_name:
        return {"name": name, "title": title, "sealed_name": ""}
    bound_to = of_signature_row(letter_id, email_hash)
    return {"name": "", "title": "", "sealed_name": seal(keys, name, title, bound_to)}


def of_signature(keys: Keyring, signature: Signature) -> tuple[str, str]:
    """A signature's name and title, opened if hidden."""
    if signature.show_name or not signature.sealed_name:
        return signature.name, signature.title
    bound_to = of_signature_row(signature.letter_id, signature.email_hash)
    return unseal(keys, signature.sealed_name, bound_to)


def keeps_a_name(signature: Signature) -> bool:
    """Whether a name or title is kept for this signature (shown or not), without opening it."""
    return bool(signature.name or signature.title or signature.sealed_name)


def set_on_signature(keys: Keyring, signature: Signature, name: str, title: str) -> None:
    """Store `name` and `title` on a signature as its `show_name` says (in the caller's
    transaction)."""
    columns = signature_columns(
        keys, signature.letter_id, signature.email_hash, signature.show_name, name, title
    )
    signature.name = columns["name"]
    signature.title = columns["title"]
    signature.sealed_name = columns["sealed_name"]


def of_pending(keys: Keyring, pending: PendingSignature | dict[str, Any]) -> tuple[str, str]:
    """A pending signature's name and title, opened."""
    row = pending if isinstance(pending, dict) else pending.model_dump()
    return unseal(keys, row["sealed_name"], of_pending_row(row["nonce_hash"]))
