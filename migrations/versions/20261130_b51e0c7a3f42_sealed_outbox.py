"""sealed outbox: queued emails kept sealed, bound to an id chosen in code

Revision ID: b51e0c7a3f42
Revises: 7d3e5c1a9b20
Create Date: 2026-11-30 13:30:00.000000

Messages still queued are sealed here, under the SECRET_KEY of the environment that runs
the migration (the one the app will use), before their plaintext columns are dropped.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = 'b51e0c7a3f42'
down_revision: str | None = '7d3e5c1a9b20'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PLAIN = ('to_address', 'subject', 'text', 'html', 'channel', 'from_name', 'reply_to', 'attachments')


def upgrade() -> None:
    from letters.sealing import OUTBOX
    from letters.settings import Settings

    bind = op.get_bind()
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sealed', sa.Text(), nullable=True))
    rows = bind.execute(sa.text(f"SELECT id, {', '.join(PLAIN)} FROM outbox_message")).all()
    if rows:
        keys = (context.config.attributes.get('settings') or Settings()).keys
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
            sealed = keys.seal(OUTBOX, json.dumps(message, ensure_ascii=False).encode(), f'outbox:{row.id}')
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
