"""moderated names and waiting index

Revision ID: 021fb47c89b7
Revises: 5a06bb97e1d2
Create Date: 2026-11-28 22:28:09.849528
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '021fb47c89b7'
down_revision: str | None = '5a06bb97e1d2'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.add_column(sa.Column('name_hidden_by_authors', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index('ix_signature_waiting', ['letter_id', 'organization', 'reveal_at'], unique=False, postgresql_where=sa.text('reveal_at IS NOT NULL'), sqlite_where=sa.text('reveal_at IS NOT NULL'))



def downgrade() -> None:
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.drop_index('ix_signature_waiting', postgresql_where=sa.text('reveal_at IS NOT NULL'), sqlite_where=sa.text('reveal_at IS NOT NULL'))
        batch_op.drop_column('name_hidden_by_authors')

