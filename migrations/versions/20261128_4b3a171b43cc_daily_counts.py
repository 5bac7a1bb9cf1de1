"""daily counts

Revision ID: 4b3a171b43cc
Revises: 5e21f8df5f10
Create Date: 2026-11-28 19:47:11.398683
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '4b3a171b43cc'
down_revision: str | None = '5e21f8df5f10'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('daily_count',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('organization', sa.String(length=100), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_daily_count_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_daily_count')),
    sa.UniqueConstraint('letter_id', 'day', 'organization', name=op.f('uq_daily_count_letter_id_day_organization'))
    )


def downgrade() -> None:
    op.drop_table('daily_count')
