"""Image references, parsed by the grammar the Docker distribution project defines."""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_REFERENCE = re.compile(
    rf"^(?:(?P<domain>{_DOMAIN})/)?(?P<path>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


@dataclass(frozen=True)
class ImageRef:
    domain: str | None
    path: str
    tag: str | None
    digest: str | None

    @property
    def explicit_registry(self) -> bool:
        """True when the reference names a registry host (so pulling from it is asked for)."""
        return self.domain is not None


def parse_image(ref: str) -> ImageRef:
    """Parse an image reference or raise ValueError saying what is wrong with it."""
    if not ref or ref != ref.strip():
        raise ValueError("an image reference must not be empty or carry spaces")
    first, _, rest = ref.partition("/")
    m = _REFERENCE.match(ref)
    if not m:
        raise ValueError(
            f"'{ref}' is not a valid image reference "
            "(expected [REGISTRY/]NAME[:TAG][@sha256:DIGEST] with a lower-case name)"
        )
    domain, path = m.group("domain"), m.group("path")
    if domain is not None and not ("." in domain or ":" in domain or domain == "localhost"
                                   or domain.startswith("[")):
        # "acme/web" — the first component is a path segment, not a registry host
        path = f"{domain}/{path}"
        domain = None
        if not re.match(rf"^{_COMPONENT}$", first):
            raise ValueError(f"'{ref}' is not a valid image reference")
    if len(path) > 255:
        raise ValueError(f"'{ref}' has a repository name longer than 255 characters")
    del rest
    return ImageRef(domain, path, m.group("tag"), m.group("digest"))
