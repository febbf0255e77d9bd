"""Dockyard: a multi-tenant container cloud platform."""

__version__ = "0.1.0"
