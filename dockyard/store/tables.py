"""Table definitions. The Alembic migrations in `migrations/` create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

# One table for every kind: the envelope is the same, the spec and status are JSON documents.
resources = Table(
    "resources", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(40), nullable=False),
    Column("scope", String(130), nullable=False),  # "" | "tenant" | "tenant/project"
    Column("name", String(63), nullable=False),
    Column("uid", String(36), nullable=False, unique=True),
    Column("generation", Integer, nullable=False),
    Column("resource_version", BigInteger, nullable=False),
    # the resourceVersion of the last write to spec, labels or annotations: a writer that read the
    # object at or after it conflicts with nobody, even if a status write happened since
    Column("spec_version", BigInteger, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("annotations", JSON, nullable=False),
    Column("spec", JSON, nullable=False),
    Column("status", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("kind", "scope", "name", name="uq_resources_key"),
)

# The change feed: every write appends one row; watchers and controllers read it in order.
changes = Table(
    "changes", metadata,
    Column("resource_version", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(40), nullable=False),
    Column("scope", String(130), nullable=False),
    Column("name", String(63), nullable=False),
    Column("type", String(10), nullable=False),  # ADDED | MODIFIED | DELETED
    Column("object", JSON, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Single-row counters and settings (the resourceVersion counter, this installation's id).
settings = Table(
    "settings", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("number", BigInteger, nullable=False, default=0),
)

revisions = Table(
    "revisions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(130), nullable=False),
    Column("app", String(63), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("template_hash", String(32), nullable=False),
    Column("template", JSON, nullable=False),
    Column("change_cause", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("scope", "app", "revision", name="uq_revisions_key"),
)

events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("scope", String(130), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("name", String(63), nullable=False),
    Column("type", String(10), nullable=False),  # Normal | Warning
    Column("reason", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("count", Integer, nullable=False, default=1),
    Column("first_at", DateTime(timezone=True), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    # the resourceVersion of the row's last write (a counted repeat takes a new one): the timeline's
    # cursor, so that a watcher sees a repeat as well as a new event
    Column("seq", BigInteger, nullable=False),
    UniqueConstraint("seq", name="uq_events_seq"),
    Index("ix_events_scope_seq", "scope", "seq"),
    # one object's newest event: what a write compares a repeat with, and an app's own events
    Index("ix_events_object", "scope", "kind", "name", "seq"),
)

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("preferences", JSON, nullable=True),  # the web console's settings: {"language", "theme"}
)

tokens = Table(
    "tokens", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user_id", Integer, nullable=False, index=True),
    Column("name", String(63), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # session | api
    Column("project", String(130), nullable=True),  # an API token limited to one project...
    Column("role", String(16), nullable=True),      # ...and at most this role there
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Leader election: the replica whose lease is current runs the controllers.
leases = Table(
    "leases", metadata,
    Column("name", String(63), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

role_bindings = Table(
    "role_bindings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user", String(63), nullable=False, index=True),
    Column("tenant", String(63), nullable=False, index=True),
    Column("project", String(63), nullable=False),  # "" for the whole tenant
    Column("role", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("user", "tenant", "project", name="uq_role_bindings_key"),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("user", String(63), nullable=False),
    Column("source", String(64), nullable=False),
    Column("method", String(10), nullable=False),
    Column("path", Text, nullable=False),
    Column("action", String(64), nullable=False),
    Column("tenant", String(63), nullable=False, index=True),
    Column("project", String(63), nullable=False),
    Column("object", Text, nullable=False),
    Column("outcome", Integer, nullable=False),  # the HTTP status
    Column("detail", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

# Images pushed to Dockyard's registry, one row per repository and tag, written from the registry's
# push and delete notifications (dockyard.registry.images): who pushed what when, which the
# registry itself does not keep. `deleted` rows stay (pushed-by of a removed tag is history).
images = Table(
    "images", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository", String(255), nullable=False),  # tenant/project/name
    Column("tag", String(128), nullable=False),
    Column("digest", String(71), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("media_type", String(100), nullable=False),
    Column("pushed_at", DateTime(timezone=True), nullable=False),
    Column("pushed_by", String(100), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    UniqueConstraint("repository", "tag", name="uq_images_tag"),
    Index("ix_images_digest", "repository", "digest"),
)

# Notification ids already applied: the registry retries an envelope until it is acknowledged.
registry_events = Table(
    "registry_events", metadata,
    Column("id", String(64), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False, index=True),
)
