"""authors: sign-in, co-authors, versions, audit log, moderation blocks, milestones

Revision ID: 5a06bb97e1d2
Revises: 25fad0ff4143
Create Date: 2026-11-28 21:41:03.946234
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '5a06bb97e1d2'
down_revision: str | None = '25fad0ff4143'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('author',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('is_admin', sa.Boolean(), nullable=False),
    sa.Column('can_create', sa.Boolean(), nullable=False),
    sa.Column('oidc_issuer', sa.String(length=500), nullable=True),
    sa.Column('oidc_subject', sa.String(length=255), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_sign_in_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_author')),
    sa.UniqueConstraint('email', name=op.f('uq_author_email')),
    sa.UniqueConstraint('oidc_issuer', 'oidc_subject', name=op.f('uq_author_oidc_issuer_oidc_subject'))
    )
    op.create_table('audit_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('author_email', sa.String(length=254), nullable=False),
    sa.Column('action', sa.String(length=30), nullable=False),
    sa.Column('organization', sa.String(length=100), nullable=False),
    sa.Column('commitment', sa.String(length=64), nullable=False),
    sa.Column('detail', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['author.id'], name=op.f('fk_audit_entry_author_id_author'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_audit_entry_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_entry'))
    )
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_entry_letter_id'), ['letter_id'], unique=False)

    op.create_table('author_link',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('nonce_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['author_id'], ['author.id'], name=op.f('fk_author_link_author_id_author'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_author_link')),
    sa.UniqueConstraint('nonce_hash', name=op.f('uq_author_link_nonce_hash'))
    )
    with op.batch_alter_table('author_link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_author_link_author_id'), ['author_id'], unique=False)

    op.create_table('author_session',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('method', sa.String(length=10), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['author.id'], name=op.f('fk_author_session_author_id_author'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_author_session')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_author_session_token_hash'))
    )
    with op.batch_alter_table('author_session', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_author_session_author_id'), ['author_id'], unique=False)

    op.create_table('blocked_signer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('email_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_blocked_signer_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_blocked_signer')),
    sa.UniqueConstraint('letter_id', 'email_hash', name=op.f('uq_blocked_signer_letter_id_email_hash'))
    )
    op.create_table('letter_author',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=False),
    sa.Column('role', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['author.id'], name=op.f('fk_letter_author_author_id_author'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_letter_author_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_letter_author')),
    sa.UniqueConstraint('letter_id', 'author_id', name=op.f('uq_letter_author_letter_id_author_id'))
    )
    with op.batch_alter_table('letter_author', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_letter_author_author_id'), ['author_id'], unique=False)

    op.create_table('letter_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('note', sa.String(length=300), nullable=False),
    sa.Column('author_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['author_id'], ['author.id'], name=op.f('fk_letter_version_author_id_author'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_letter_version_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_letter_version')),
    sa.UniqueConstraint('letter_id', 'number', name=op.f('uq_letter_version_letter_id_number'))
    )
    op.create_table('milestone',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('threshold', sa.Integer(), nullable=False),
    sa.Column('reached_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_milestone_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_milestone')),
    sa.UniqueConstraint('letter_id', 'threshold', name=op.f('uq_milestone_letter_id_threshold'))
    )
    with op.batch_alter_table('letter', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('revised_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('revision_note', sa.String(length=300), server_default='', nullable=False))
        batch_op.add_column(sa.Column('goal', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('closes_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.add_column(sa.Column('letter_version', sa.Integer(), server_default='1', nullable=False))
        batch_op.create_index('ix_signature_letter_version', ['letter_id', 'letter_version'], unique=False)

    # Letters published before versions existed: their current text is version 1.
    op.execute(
        "INSERT INTO letter_version (letter_id, number, title, body, note, created_at)"
        " SELECT id, 1, title, body, '', COALESCE(published_at, created_at) FROM letter"
        " WHERE status IN ('published', 'closed')"
    )


def downgrade() -> None:
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.drop_index('ix_signature_letter_version')
        batch_op.drop_column('letter_version')

    with op.batch_alter_table('letter', schema=None) as batch_op:
        batch_op.drop_column('closes_at')
        batch_op.drop_column('goal')
        batch_op.drop_column('revision_note')
        batch_op.drop_column('revised_at')
        batch_op.drop_column('version')

    op.drop_table('milestone')
    op.drop_table('letter_version')
    with op.batch_alter_table('letter_author', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_letter_author_author_id'))

    op.drop_table('letter_author')
    op.drop_table('blocked_signer')
    with op.batch_alter_table('author_session', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_author_session_author_id'))

    op.drop_table('author_session')
    with op.batch_alter_table('author_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_author_link_author_id'))

    op.drop_table('author_link')
    with op.batch_alter_table('audit_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_entry_letter_id'))

    op.drop_table('audit_entry')
    op.drop_table('author')
