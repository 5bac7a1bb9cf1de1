"""signing core

Revision ID: 4589af5b12a0
Revises: 
Create Date: 2026-11-28 18:17:23.100463
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '4589af5b12a0'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('letter',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('slug', sa.String(length=80), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('ask_title', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('published_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('verified_count', sa.Integer(), nullable=False),
    sa.Column('named_count', sa.Integer(), nullable=False),
    sa.Column('hidden_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_letter')),
    sa.UniqueConstraint('slug', name=op.f('uq_letter_slug'))
    )
    op.create_table('rate_limit_hit',
    sa.Column('key', sa.String(length=80), nullable=False),
    sa.Column('window_start', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('hits', sa.Integer(), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('key', 'window_start', name=op.f('pk_rate_limit_hit'))
    )
    op.create_table('allowed_domain',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('organization', sa.String(length=100), nullable=False),
    sa.Column('include_subdomains', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_allowed_domain_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_allowed_domain')),
    sa.UniqueConstraint('letter_id', 'domain', name=op.f('uq_allowed_domain_letter_id_domain'))
    )
    with op.batch_alter_table('allowed_domain', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_allowed_domain_letter_id'), ['letter_id'], unique=False)

    op.create_table('organization_count',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('organization', sa.String(length=100), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_organization_count_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_organization_count')),
    sa.UniqueConstraint('letter_id', 'organization', name=op.f('uq_organization_count_letter_id_organization'))
    )
    op.create_table('pending_signature',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('email_hash', sa.String(length=64), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('organization', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('show_name', sa.Boolean(), nullable=False),
    sa.Column('nonce_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_pending_signature_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_pending_signature')),
    sa.UniqueConstraint('nonce_hash', name=op.f('uq_pending_signature_nonce_hash'))
    )
    with op.batch_alter_table('pending_signature', schema=None) as batch_op:
        batch_op.create_index('ix_pending_signature_expires_at', ['expires_at'], unique=False)

    op.create_table('signature',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('email_hash', sa.String(length=64), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('organization', sa.String(length=100), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('show_name', sa.Boolean(), nullable=False),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_signature_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signature')),
    sa.UniqueConstraint('letter_id', 'email_hash', name=op.f('uq_signature_letter_id_email_hash'))
    )
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.create_index('ix_signature_public', ['letter_id', 'show_name', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.drop_index('ix_signature_public')

    op.drop_table('signature')
    with op.batch_alter_table('pending_signature', schema=None) as batch_op:
        batch_op.drop_index('ix_pending_signature_expires_at')

    op.drop_table('pending_signature')
    op.drop_table('organization_count')
    with op.batch_alter_table('allowed_domain', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_allowed_domain_letter_id'))

    op.drop_table('allowed_domain')
    op.drop_table('rate_limit_hit')
    op.drop_table('letter')
