"""sealed hidden names: a name and title are kept in clear only while shown

Revision ID: c3a9d5e81b07
Revises: b51e0c7a3f42
Create Date: 2026-11-30 14:00:00.000000

Hidden names and titles, and every pending signature's, are sealed here under the
SECRET_KEY of the environment that runs the migration (the one the app will use). On
PostgreSQL the old row versions stay in the table's files until VACUUM (FULL) rewrites
them (docs/privacy.md).
"""

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from alembic import context, op
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

revision: str = 'c3a9d5e81b07'
down_revision: str | None = 'b51e0c7a3f42'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _secret() -> str:
    """The SECRET_KEY the app will use (as letters/migrate.py passes it, else the environment)."""
    settings = context.config.attributes.get('settings')
    if settings is None:
        from letters.settings import Settings  # as migrations/env.py does

        settings = Settings()
    return settings.secret_key


def _sealer(secret: str, purpose: str) -> Callable[[bytes, str], str]:
    """Sealing as letters/sealing.py does it at this revision, written out so that this
    migration keeps working whatever that module becomes: AES-256-GCM under a key derived
    with HKDF-SHA256 for the purpose, a fresh nonce, the row as associated data, the key's
    id in front."""
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f'letters sealing v1 {purpose}'.encode()
    ).derive(secret.encode())
    key_id = hmac.new(secret.encode(), b'letters key id', hashlib.sha256).hexdigest()[:8]
    cipher = AESGCM(key)

    def seal(plaintext: bytes, bound_to: str) -> str:
        nonce = os.urandom(12)
        sealed = cipher.encrypt(nonce, plaintext, bound_to.encode())
        return f'{key_id}.{base64.urlsafe_b64encode(nonce + sealed).decode()}'

    return seal


def _seal(seal: Callable[[bytes, str], str], name: str, title: str, bound_to: str) -> str:
    if not (name or title):
        return ''
    return seal(json.dumps([name, title], ensure_ascii=False).encode(), bound_to)


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sealed_name', sa.Text(), server_default='', nullable=False))
    with op.batch_alter_table('pending_signature', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sealed_name', sa.Text(), server_default='', nullable=False))
    hidden = bind.execute(
        sa.text(
            "SELECT id, letter_id, email_hash, name, title FROM signature "
            "WHERE NOT show_name AND (name != '' OR title != '')"
        )
    ).all()
    pending = bind.execute(
        sa.text("SELECT id, nonce_hash, name, title FROM pending_signature WHERE name != '' OR title != ''")
    ).all()
    if hidden or pending:
        seal = _sealer(_secret(), 'names')
        for row in hidden:
            sealed = _seal(seal, row.name, row.title, f'signature:{row.letter_id}:{row.email_hash}')
            bind.execute(
                sa.text("UPDATE signature SET sealed_name = :sealed, name = '', title = '' WHERE id = :id"),
                {'sealed': sealed, 'id': row.id},
            )
        for row in pending:
            sealed = _seal(seal, row.name, row.title, f'pending:{row.nonce_hash}')
            bind.execute(
                sa.text('UPDATE pending_signature SET sealed_name = :sealed WHERE id = :id'),
                {'sealed': sealed, 'id': row.id},
            )
    with op.batch_alter_table('pending_signature', schema=None) as batch_op:
        batch_op.drop_column('name')
        batch_op.drop_column('title')


def downgrade() -> None:
    # Sealed names cannot be opened here: hidden names and pending ones are lost.
    with op.batch_alter_table('pending_signature', schema=None) as batch_op:
        batch_op.add_column(sa.Column('title', sa.String(length=120), server_default='', nullable=False))
        batch_op.add_column(sa.Column('name', sa.String(length=100), server_default='', nullable=False))
        batch_op.drop_column('sealed_name')
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.drop_column('sealed_name')
