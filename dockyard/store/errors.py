"""Errors the store raises; the API turns each into one HTTP status."""


class StoreError(Exception):
    pass


class NotFound(StoreError):
    pass


class AlreadyExists(StoreError):
    pass


class Conflict(StoreError):
    """A write carried a stale resourceVersion, or would break a rule between objects."""


class Gone(StoreError):
    """A watch asked for changes older than the change feed still holds."""
