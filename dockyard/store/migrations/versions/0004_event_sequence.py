"""event sequence: a cursor per write of an event row

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('seq', sa.BigInteger(), nullable=True))
    # rows written before keep their order and sort below every later write (which takes the next
    # resourceVersion): seq = current resourceVersion - (max id - id)
    conn = op.get_bind()
    rv = conn.execute(sa.text("SELECT number FROM settings WHERE key = 'resource_version'")).scalar() or 0
    top = conn.execute(sa.text("SELECT MAX(id) FROM events")).scalar() or 0
    conn.execute(sa.text("UPDATE events SET seq = :base + id"), {"base": rv - top})
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.alter_column('seq', existing_type=sa.BigInteger(), nullable=False)
        batch_op.create_unique_constraint('uq_events_seq', ['seq'])
        batch_op.create_index('ix_events_scope_seq', ['scope', 'seq'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_scope_seq')
        batch_op.drop_constraint('uq_events_seq', type_='unique')
        batch_op.drop_column('seq')
