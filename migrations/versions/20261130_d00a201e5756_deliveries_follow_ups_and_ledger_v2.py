"""deliveries, follow-ups (replies and outcomes), the delivery mail channel and ledger format v2

Revision ID: d00a201e5756
Revises: 021fb47c89b7
Create Date: 2026-11-30 10:18:16.302708
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'd00a201e5756'
down_revision: str | None = '021fb47c89b7'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('delivery',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('recipient', sa.String(length=200), nullable=False),
    sa.Column('method', sa.String(length=10), nullable=False),
    sa.Column('delivered_on', sa.String(length=10), nullable=False),
    sa.Column('letter_version', sa.Integer(), nullable=False),
    sa.Column('verified_count', sa.Integer(), nullable=False),
    sa.Column('ledger_seq', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('snapshot', sa.Text(), nullable=False),
    sa.Column('address', sa.String(length=254), nullable=False),
    sa.Column('sender_name', sa.String(length=100), nullable=False),
    sa.Column('reply_to', sa.String(length=254), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('failed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['author_id'], ['author.id'], name=op.f('fk_delivery_author_id_author'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_delivery_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery')),
    sa.UniqueConstraint('letter_id', 'ledger_seq', name=op.f('uq_delivery_letter_id_ledger_seq'))
    )

    op.create_table('follow_up',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('happened_on', sa.String(length=10), nullable=False),
    sa.Column('source', sa.String(length=200), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['author.id'], name=op.f('fk_follow_up_author_id_author'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_follow_up_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_follow_up'))
    )
    with op.batch_alter_table('follow_up', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_follow_up_letter_id'), ['letter_id'], unique=False)

    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.add_column(sa.Column('format_version', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('digest', sa.String(length=64), server_default='', nullable=False))

    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('channel', sa.String(length=10), server_default='site', nullable=False))
        batch_op.add_column(sa.Column('from_name', sa.String(length=100), server_default='', nullable=False))
        batch_op.add_column(sa.Column('reply_to', sa.String(length=254), server_default='', nullable=False))
        batch_op.add_column(sa.Column('attachments', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('delivery_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_outbox_message_delivery_id_delivery'), 'delivery', ['delivery_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('outbox_message', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_outbox_message_delivery_id_delivery'), type_='foreignkey')
        batch_op.drop_column('delivery_id')
        batch_op.drop_column('attachments')
        batch_op.drop_column('reply_to')
        batch_op.drop_column('from_name')
        batch_op.drop_column('channel')

    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.drop_column('digest')
        batch_op.drop_column('format_version')

    with op.batch_alter_table('follow_up', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_follow_up_letter_id'))

    op.drop_table('follow_up')
    op.drop_table('delivery')
