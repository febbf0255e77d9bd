"""Persistence: tables, migrations, the resource repository and its change feed."""
