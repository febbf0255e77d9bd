"""The image registry: Debian's distribution registry as a managed child, Dockyard as its token
service, robot accounts, and (in sibling modules) the proxy, quotas, images and garbage collection."""
