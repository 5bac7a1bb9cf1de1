"""letter language: the language a letter's authors wrote it in

Revision ID: 3c9e1f7a2b44
Revises: c40cab250053
Create Date: 2026-11-30 14:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '3c9e1f7a2b44'
down_revision: str | None = 'c40cab250053'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('letter', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=35), server_default='en', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('letter', schema=None) as batch_op:
        batch_op.drop_column('language')
