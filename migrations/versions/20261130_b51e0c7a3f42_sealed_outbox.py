"""sealed outbox: queued emails kept sealed, bound to an id chosen in code

Revision ID: b51e0c7a3f42
Revises: 7d3e5c1a9b20
Create Date: 2026-11-30 13:30:00.000000

Messages still queued are sealed here, under the SECRET_KEY of the environment that runs
the migration (the one the app will use), before their plaintext columns are dropped.
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

revision: str = 'b51e0c7a3f42'
down_revision: str | None = '7d3e5c1a9b20'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLAIN = ('to_address', 'subject', 'text', 'html', 'channel', 'from_name', 'reply_to', 'attachments')


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


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sealed', sa.Text(), nullable=True))
    rows = bind.execute(sa.text(f"SELECT id, {', '.join(PLAIN)} FROM outbox_message")).all()
    if rows:
        seal = _sealer(_secret(), 'outbox')
        for row in rows:
            message = {
                'to': row.to_address,
                'subject': row.subject,
                'text': row.text,
                'html': row.html,
                'channel': row.channel,
                'from_name': row.from_name,
                'reply_to': row.reply_to,
                'attachments': json.loads(row.attachments or '[]'),
            }
            sealed = seal(json.dumps(message, ensure_ascii=False).encode(), f'outbox:{row.id}')
            bind.execute(
                sa.text('UPDATE outbox_message SET sealed = :sealed WHERE id = :id'),
                {'sealed': sealed, 'id': row.id},
            )
    if bind.dialect.name == 'postgresql':
        op.execute('ALTER TABLE outbox_message ALTER COLUMN id DROP DEFAULT')
        op.execute('DROP SEQUENCE IF EXISTS outbox_message_id_seq')
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.alter_column('sealed', existing_type=sa.Text(), nullable=False)
        batch_op.alter_column(
            'id',
            existing_type=sa.Integer(),
            type_=sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
        )
        for name in PLAIN:
            batch_op.drop_column(name)


def downgrade() -> None:
    # Sealed messages cannot be turned back into plaintext here: the queue is emptied.
    op.execute('DELETE FROM outbox_message')
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_column('sealed')
        batch_op.add_column(sa.Column('to_address', sa.String(length=254), nullable=False))
        batch_op.add_column(sa.Column('subject', sa.String(length=200), nullable=False))
        batch_op.add_column(sa.Column('text', sa.Text(), nullable=False))
        batch_op.add_column(sa.Column('html', sa.Text(), nullable=False))
        batch_op.add_column(sa.Column('channel', sa.String(length=10), server_default='site', nullable=False))
        batch_op.add_column(sa.Column('from_name', sa.String(length=100), server_default='', nullable=False))
        batch_op.add_column(sa.Column('reply_to', sa.String(length=254), server_default='', nullable=False))
        batch_op.add_column(sa.Column('attachments', sa.Text(), server_default='', nullable=False))
        batch_op.alter_column('id', existing_type=sa.BigInteger(), type_=sa.Integer())
