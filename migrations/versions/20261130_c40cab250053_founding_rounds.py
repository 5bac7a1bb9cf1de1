"""founding rounds: a draft's secret signing round, and signatures not counted until launch

Revision ID: c40cab250053
Revises: 1b3c8089487f
Create Date: 2026-11-30 13:05:05.855438
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = 'c40cab250053'
down_revision: str | None = '1b3c8089487f'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('founding_round',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('link_nonce', sa.String(length=64), nullable=False),
    sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('launch_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('time_zone', sa.String(length=64), server_default='UTC', nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('launched_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_founding_round_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_founding_round')),
    sa.UniqueConstraint('letter_id', name=op.f('uq_founding_round_letter_id')),
    sa.UniqueConstraint('link_nonce', name=op.f('uq_founding_round_link_nonce'))
    )
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.add_column(sa.Column('founding', sa.Boolean(), server_default=sa.false(), nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.drop_column('founding')

    op.drop_table('founding_round')
