"""Who asked for a build: the server stamps it on Builds and BuildConfigs, never the manifest.

A build that deploys changes an App, so the deploy is made with the rights of the user who wrote
the Build (or, for Builds a webhook starts, the user who last wrote the BuildConfig). The
annotation is set or overwritten on every write, so a user cannot name someone else."""

from __future__ import annotations

REQUESTER_ANNOTATION = "dockyard.io/requested-by"
STAMPED_KINDS = frozenset({"Build", "BuildConfig"})


def stamp(kind: str, annotations: dict[str, str], user: str) -> dict[str, str]:
    """The annotations to store for an object of `kind` written by `user`."""
    if kind not in STAMPED_KINDS:
        return annotations
    return {**annotations, REQUESTER_ANNOTATION: user}
