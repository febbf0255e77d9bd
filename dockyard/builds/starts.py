"""Starting a Build from a BuildConfig (by hand or from a webhook), and keeping each config's
history to its `historyLimit`. Store only: the runner picks Pending Builds up on the lease holder."""

from __future__ import annotations

from dockyard.admission.requester import REQUESTER_ANNOTATION
from dockyard.model.build import BUILD_FIELDS, FINISHED
from dockyard.policy.egress import PRIVATE_ANNOTATION
from dockyard.store.errors import AlreadyExists
from dockyard.store.repository import Store, StoredObject

CONFIG_LABEL = "dockyard.io/buildconfig"
CAUSE_ANNOTATION = "dockyard.io/build-cause"


def build_number(name: str, config: str) -> int:
    tail = name.removeprefix(f"{config[:55]}-")
    return int(tail) if tail != name and tail.isdigit() else 0


def start_from_config(store: Store, config: StoredObject, *, requester: str | None, cause: str) -> StoredObject:
    """Create the next Build `<config>-<n>` with the config's spec. The admin's mark on the config's
    git URL (and who wrote the config, for its deploy) go with it; `requester` (a manual start)
    replaces the config's writer."""
    spec = {k: v for k, v in config.spec.items() if k in BUILD_FIELDS}
    annotations = {CAUSE_ANNOTATION: cause[:200]}
    for key in (PRIVATE_ANNOTATION, REQUESTER_ANNOTATION):
        if key in config.annotations:
            annotations[key] = config.annotations[key]
    if requester:
        annotations[REQUESTER_ANNOTATION] = requester
    siblings = store.list("Build", scope=config.scope)[0]
    n = max([build_number(b.name, config.name) for b in siblings if b.labels.get(CONFIG_LABEL) == config.name],
            default=0)
    for _attempt in range(20):
        n += 1
        try:
            return store.create("Build", config.scope, f"{config.name[:55]}-{n}", spec,
                                labels={CONFIG_LABEL: config.name}, annotations=annotations,
                                status={"phase": "Pending", "buildConfig": config.name})
        except AlreadyExists:
            continue  # a concurrent start took this number
    raise AlreadyExists(f"could not find a free build name for {config.scope}/{config.name}")


def queued_build(store: Store, config: StoredObject) -> StoredObject | None:
    """A Build of `config` that has not started yet. A webhook push while one waits adds nothing:
    that build fetches the branch's head when it starts (so a replayed webhook queues one build
    at most)."""
    for b in store.list("Build", scope=config.scope)[0]:
        if b.labels.get(CONFIG_LABEL) == config.name and (b.status or {}).get("phase", "Pending") == "Pending":
            return b
    return None


def running_build(store: Store, config: StoredObject, commit: str) -> StoredObject | None:
    """A Running Build of `config` that builds `commit`, or is still fetching (it fetches the
    branch's head, which the push has already moved): a webhook for that commit, sent twice or
    replayed, must not build it a second time."""
    for b in store.list("Build", scope=config.scope)[0]:
        st = b.status or {}
        if b.labels.get(CONFIG_LABEL) == config.name and st.get("phase") == "Running" and \
                st.get("commit") in (None, commit):
            return b
    return None


def prune_history(store: Store, builds: list[StoredObject], configs: dict[tuple[str, str], int]) -> list[StoredObject]:
    """Delete each config's finished Builds beyond its history limit (oldest first); return them."""
    by_config: dict[tuple[str, str], list[StoredObject]] = {}
    for b in builds:
        cfg = b.labels.get(CONFIG_LABEL)
        if cfg and (b.status or {}).get("phase") in FINISHED:
            by_config.setdefault((b.scope, cfg), []).append(b)
    gone = []
    for key, finished in by_config.items():
        keep = configs.get(key)
        if keep is None or len(finished) <= keep:
            continue
        finished.sort(key=lambda b: (b.created_at, build_number(b.name, key[1])))
        for b in finished[:-keep]:
            try:
                store.delete("Build", b.scope, b.name)
                gone.append(b)
            except Exception:  # noqa: BLE001 — deleted meanwhile
                pass
    return gone
