"""events: an index per object (scope, kind, name, seq) instead of the one on scope alone

Revision ID: 0005
Revises: 0004
"""
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (scope, seq) and (scope, kind, name, seq) both begin with scope: the index on scope alone only
    # misled SQLite's planner into sorting a whole project's events
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_scope')
        batch_op.create_index('ix_events_object', ['scope', 'kind', 'name', 'seq'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_object')
        batch_op.create_index('ix_events_scope', ['scope'], unique=False)
