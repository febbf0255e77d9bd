"""images: pushed-by/at of every tag in Dockyard's registry, and the applied notification ids

Revision ID: 0007_images
Revises: 0006_robots
"""
import sqlalchemy as sa
from alembic import op

revision = "0007_images"
down_revision = "0006_robots"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("repository", sa.String(length=255), nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("pushed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("pushed_by", sa.String(length=100), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("repository", "tag", name="uq_images_tag"),
    )
    op.create_index("ix_images_digest", "images", ["repository", "digest"], unique=False)
    op.create_table(
        "registry_events",
        sa.Column("id", sa.String(length=64), primary_key=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_registry_events_received_at", "registry_events", ["received_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_registry_events_received_at", table_name="registry_events")
    op.drop_table("registry_events")
    op.drop_index("ix_images_digest", table_name="images")
    op.drop_table("images")
