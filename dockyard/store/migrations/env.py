"""Alembic environment: runs migrations on the connection the caller hands over."""

from alembic import context

from dockyard.store.tables import metadata

connection = context.config.attributes.get("connection")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
