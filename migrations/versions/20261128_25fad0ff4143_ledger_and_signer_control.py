"""ledger and signer control

Revision ID: 25fad0ff4143
Revises: 4b3a171b43cc
Create Date: 2026-11-28 21:31:44.590056
"""

import hashlib
import json
import secrets
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '25fad0ff4143'
down_revision: str | None = '4b3a171b43cc'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('ledger_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('organization', sa.String(length=100), nullable=False),
    sa.Column('named', sa.Boolean(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('title', sa.String(length=120), nullable=False),
    sa.Column('name_salt', sa.String(length=32), nullable=False),
    sa.Column('name_digest', sa.String(length=64), nullable=False),
    sa.Column('commitment', sa.String(length=64), nullable=False),
    sa.Column('prev_hash', sa.String(length=64), nullable=False),
    sa.Column('entry_hash', sa.String(length=64), nullable=False),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_ledger_entry_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ledger_entry')),
    sa.UniqueConstraint('letter_id', 'seq', name=op.f('uq_ledger_entry_letter_id_seq'))
    )
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ledger_entry_commitment'), ['commitment'], unique=False)

    op.create_table('manage_link',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('letter_id', sa.Integer(), nullable=False),
    sa.Column('email_hash', sa.String(length=64), nullable=False),
    sa.Column('nonce_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['letter_id'], ['letter.id'], name=op.f('fk_manage_link_letter_id_letter'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_manage_link')),
    sa.UniqueConstraint('nonce_hash', name=op.f('uq_manage_link_nonce_hash'))
    )
    with op.batch_alter_table('manage_link', schema=None) as batch_op:
        batch_op.create_index('ix_manage_link_expires_at', ['expires_at'], unique=False)

    with op.batch_alter_table('letter', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ledger_length', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('ledger_head', sa.String(length=64), server_default='0000000000000000000000000000000000000000000000000000000000000000', nullable=False))
        batch_op.add_column(sa.Column('erase_names_after_days', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('names_erased_at', sa.DateTime(timezone=True), nullable=True))

    with op.batch_alter_table('pending_signature', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reveal_at', sa.Integer(), nullable=True))

    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reveal_at', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('commitment', sa.String(length=64), nullable=True))

    backfill_ledger()

    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.alter_column('commitment', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_signature_commitment'), ['commitment'])



def new_receipt() -> str:
    return secrets.token_hex(16)


def commitment(receipt: str) -> str:
    return hashlib.sha256(("letters-receipt-v1:" + receipt.strip()).encode()).hexdigest()


def name_digest(salt: str, name: str, title: str) -> str:
    data = bytes.fromhex(salt) + json.dumps([name, title], ensure_ascii=False).encode()
    return hashlib.sha256(data).hexdigest()


def entry_hash(entry: dict) -> str:
    chained = {
        'format': 'letters-ledger-v1',
        'seq': entry['seq'],
        'kind': entry['kind'],
        'day': entry['day'],
        'organization': entry['organization'],
        'named': entry['named'],
        'name_digest': entry['name_digest'],
        'commitment': entry['commitment'],
        'prev': entry['prev'],
    }
    canonical = json.dumps(chained, sort_keys=True, separators=(',', ':'), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def backfill_ledger() -> None:
    """Give signatures verified before the ledger existed a commitment and a "signed" entry.

    Their receipts were never shown to anyone, so nobody can claim those entries; the
    counts still reconcile. Uses the v1 hash format, which never changes; the functions
    below are a frozen copy of letters.record.ledger's, so this migration keeps working
    whatever the package becomes.
    """
    connection = op.get_bind()
    signatures = connection.execute(
        sa.text(
            "SELECT id, letter_id, organization, name, title, show_name, verified_at"
            " FROM signature ORDER BY letter_id, id"
        )
    ).all()
    heads: dict[int, tuple[int, str]] = {}
    for row in signatures:
        seq, prev = heads.get(row.letter_id, (0, '0' * 64))
        seq += 1
        salt = secrets.token_hex(16) if row.show_name else ''
        verified_at = row.verified_at
        day = verified_at[:10] if isinstance(verified_at, str) else verified_at.date().isoformat()
        entry = {
            'letter_id': row.letter_id,
            'seq': seq,
            'kind': 'signed',
            'day': day,
            'organization': row.organization,
            'named': bool(row.show_name),
            'name': row.name if row.show_name else '',
            'title': row.title if row.show_name else '',
            'name_salt': salt,
            'name_digest': name_digest(salt, row.name, row.title) if row.show_name else '',
            'commitment': commitment(new_receipt()),
            'prev': prev,
        }
        entry['entry_hash'] = entry_hash(entry)
        connection.execute(
            sa.text(
                "INSERT INTO ledger_entry (letter_id, seq, kind, day, organization, named, name,"
                " title, name_salt, name_digest, commitment, prev_hash, entry_hash) VALUES"
                " (:letter_id, :seq, :kind, :day, :organization, :named, :name, :title,"
                " :name_salt, :name_digest, :commitment, :prev, :entry_hash)"
            ),
            entry,
        )
        connection.execute(
            sa.text("UPDATE signature SET commitment = :commitment WHERE id = :id"),
            {'commitment': entry['commitment'], 'id': row.id},
        )
        heads[row.letter_id] = (seq, entry['entry_hash'])
    for letter_id, (length, head) in heads.items():
        connection.execute(
            sa.text("UPDATE letter SET ledger_length = :length, ledger_head = :head WHERE id = :id"),
            {'length': length, 'head': head, 'id': letter_id},
        )


def downgrade() -> None:
    with op.batch_alter_table('signature', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_signature_commitment'), type_='unique')
        batch_op.drop_column('commitment')
        batch_op.drop_column('reveal_at')

    with op.batch_alter_table('pending_signature', schema=None) as batch_op:
        batch_op.drop_column('reveal_at')

    with op.batch_alter_table('letter', schema=None) as batch_op:
        batch_op.drop_column('names_erased_at')
        batch_op.drop_column('erase_names_after_days')
        batch_op.drop_column('ledger_head')
        batch_op.drop_column('ledger_length')

    with op.batch_alter_table('manage_link', schema=None) as batch_op:
        batch_op.drop_index('ix_manage_link_expires_at')

    op.drop_table('manage_link')
    with op.batch_alter_table('ledger_entry', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ledger_entry_commitment'))

    op.drop_table('ledger_entry')
