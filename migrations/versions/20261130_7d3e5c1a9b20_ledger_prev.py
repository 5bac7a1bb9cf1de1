"""ledger prev: the hash the last entry of a letter's ledger chains on

Revision ID: 7d3e5c1a9b20
Revises: d00a201e5756
Create Date: 2026-11-30 10:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '7d3e5c1a9b20'
down_revision: str | None = 'd00a201e5756'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS = '0' * 64


def upgrade() -> None:
    with op.batch_alter_table('letter', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ledger_prev', sa.String(length=64), server_default=GENESIS, nullable=False))
    op.execute(
        "UPDATE letter SET ledger_prev = COALESCE((SELECT e.prev_hash FROM ledger_entry e "
        "WHERE e.letter_id = letter.id AND e.seq = letter.ledger_length), ledger_prev)"
    )


def downgrade() -> None:
    with op.batch_alter_table('letter', schema=None) as batch_op:
        batch_op.drop_column('ledger_prev')
