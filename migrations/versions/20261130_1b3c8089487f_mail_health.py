"""mail health: sending attempts counted by hour and outcome, and failure alerts

Revision ID: 1b3c8089487f
Revises: c3a9d5e81b07
Create Date: 2026-11-30 13:08:43.415754
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '1b3c8089487f'
down_revision: str | None = 'c3a9d5e81b07'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('mail_alert',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('sent_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_alert')),
    sa.UniqueConstraint('day', name=op.f('uq_mail_alert_day'))
    )
    op.create_table('mail_tally',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('outcome', sa.String(length=10), nullable=False),
    sa.Column('reply_code', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=9), nullable=False),
    sa.Column('shard', sa.Integer(), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.Column('last_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_mail_tally')),
    sa.UniqueConstraint('hour', 'channel', 'outcome', 'reply_code', 'status', 'shard', name=op.f('uq_mail_tally_hour_channel_outcome_reply_code_status_shard'))
    )



def downgrade() -> None:
    op.drop_table('mail_tally')
    op.drop_table('mail_alert')
