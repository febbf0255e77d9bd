"""Tag retention: which tags of a project a policy lets go (pure), and applying that to the
registry (deleting their manifests).

Rules are `spec.registry.retention` of the project (model/project.py RetentionRule). For each
rule and each repository, the tags matching both globs are ordered by push time; the `keepLast`
newest and those pushed within `keepDays` are kept. A tag goes only when at least one rule matches
it and no rule keeps it. It never goes when

- an App of the project names it, or runs the digest it points to or has it in its rollout
  history: running workloads, their next restart and a rollback must find their image (an App
  runs images of its own project's repositories only, and a delete touches no other repository);
- another tag that stays points to the same digest: the registry deletes manifests, not tags, so
  deleting it would take the kept tag along;
- Dockyard has no push time for it (pushed while it was not listening): an unknown age is not old.
"""

from __future__ import annotations

import fnmatch
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from dockyard.model.project import ProjectSpec, RetentionRule
from dockyard.registry import autodeploy, untagged
from dockyard.registry.client import RegistryClient, RegistryError
from dockyard.registry.images import ImageRecords, TagRecord
from dockyard.registry.settings import RegistrySettings
from dockyard.store.repository import Store, now

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    repository: str
    tag: str
    digest: str
    pushed_at: datetime
    reason: str

    def public(self) -> dict:
        return {"repository": self.repository, "tag": self.tag, "digest": self.digest,
                "pushedAt": self.pushed_at.isoformat().replace("+00:00", "Z"), "reason": self.reason}


@dataclass(frozen=True)
class Plan:
    """What a retention run deletes, what a rule would delete but may not go (`protected`), and
    what no rule lets go (`kept`: kept by keepLast/keepDays, or matched by no rule); each with why."""

    delete: list[Verdict]
    protected: list[Verdict]
    kept: list[Verdict]


def _kept_by(i: int, rule: RetentionRule, ordered: list[TagRecord], at: datetime) -> dict[str, str]:
    """The tags `rule` (number i + 1) keeps among `ordered` (newest first), with why."""
    keep: dict[str, str] = {}
    if rule.keep_days is not None:
        since = at - timedelta(days=rule.keep_days)
        keep |= {r.tag: f"rule {i + 1}: keepDays {rule.keep_days} (pushed {r.pushed_at:%Y-%m-%d})"
                 for r in ordered if r.pushed_at >= since}
    if rule.keep_last is not None:
        keep |= {r.tag: f"rule {i + 1}: keepLast {rule.keep_last} (newest {n + 1} of {len(ordered)} matching)"
                 for n, r in enumerate(ordered[:rule.keep_last])}
    return keep


def _why(users: Mapping | set, key: object, generic: str) -> str | None:
    """Why `key` is needed: the names in `users` when it is a mapping, else `generic`."""
    if key not in users:
        return None
    return users[key] if isinstance(users, Mapping) else generic


def plan(rules: list[RetentionRule], tags: list[TagRecord], *, in_use: Mapping | set,
         digests_in_use: Mapping | set, at: datetime) -> Plan:
    """The verdict on every tag. `in_use`: (repository, tag) pairs Apps name; `digests_in_use`:
    digests Apps run or have in their rollout history; either may map to who uses it (a reason)."""
    by_repo: dict[str, list[TagRecord]] = defaultdict(list)
    for t in tags:
        by_repo[t.repository].append(t)
    doomed: dict[tuple[str, str], str] = {}
    kept: dict[tuple[str, str], str] = {}
    for repo, found in by_repo.items():
        name = repo.split("/", 2)[2]
        for i, rule in enumerate(rules):
            if not fnmatch.fnmatchcase(name, rule.repositories):
                continue
            matching = sorted((t for t in found if fnmatch.fnmatchcase(t.tag, rule.tags)),
                              key=lambda t: (t.pushed_at, t.tag), reverse=True)
            keep = _kept_by(i, rule, matching, at)
            for t in matching:
                if t.tag in keep:
                    kept.setdefault((repo, t.tag), keep[t.tag])
                else:
                    doomed.setdefault((repo, t.tag), f"rule {i + 1} ({_describe(rule)})")
    record = {(t.repository, t.tag): t for t in tags}
    staying = {key for key in record if key not in doomed or key in kept}
    staying_digests: dict[tuple[str, str], list[str]] = defaultdict(list)
    for repo, tag in sorted(staying):
        staying_digests[(repo, record[(repo, tag)].digest)].append(tag)
    delete, protected, rest = [], [], []
    for key, t in sorted(record.items()):
        def verdict(reason: str, t: TagRecord = t) -> Verdict:
            return Verdict(t.repository, t.tag, t.digest, t.pushed_at, reason)

        if key in kept:
            rest.append(verdict(kept[key]))
        elif key not in doomed:
            rest.append(verdict("no rule matches it"))
        elif why := (_why(in_use, key, "in use by an App")
                     or _why(digests_in_use, t.digest, "in use by an App or its rollout history")):
            protected.append(verdict(why))
        elif sharing := staying_digests.get((t.repository, t.digest)):
            protected.append(verdict(f"its digest is also the digest of a tag that stays ({', '.join(sharing)})"))
        else:
            delete.append(verdict(doomed[key]))
    return Plan(delete, protected, rest)


def _describe(rule: RetentionRule) -> str:
    keeps = []
    if rule.keep_last is not None:
        keeps.append(f"keepLast {rule.keep_last}")
    if rule.keep_days is not None:
        keeps.append(f"keepDays {rule.keep_days}")
    return f"repositories {rule.repositories!r}, tags {rule.tags!r}: {', '.join(keeps)}"


def images_in_use(store: Store, settings: RegistrySettings | None, tenant: str, project: str
                  ) -> tuple[dict[tuple[str, str], str], dict[str, str]]:
    """(repository, tag) pairs the project's Apps name, and the digests they run or their rollout
    history names (a rollback restores those exactly), each with who uses it."""
    scope = f"{tenant}/{project}"
    tags = autodeploy.apps_by_image(store, settings, scope)  # a (repository, digest) key matches no tag
    digests = {d: untagged.describe_users(users, scope) for d, users in untagged.digest_users(store, scope).items()}
    return {k: "in use by App " + ", ".join(v) for k, v in tags.items()}, digests


def plan_project(store: Store, settings: RegistrySettings | None, tenant: str, project: str,
                 at: datetime | None = None) -> Plan:
    """The project's policy applied to its tags now: what goes, what it would let go but may not,
    and what it keeps."""
    spec = ProjectSpec.model_validate(store.get("Project", tenant, project).spec)
    if not spec.registry.retention:
        return Plan([], [], [])
    in_use, digests = images_in_use(store, settings, tenant, project)
    return plan(spec.registry.retention, ImageRecords(store).project_tags(tenant, project),
                in_use=in_use, digests_in_use=digests, at=at or now())


def apply(client: RegistryClient, verdicts: list[Verdict], actor: str = "retention") -> tuple[list[Verdict], list[str]]:
    """Delete the manifests for `actor` (whom the registry's notifications name); (the verdicts
    whose manifest went, the failures one line each)."""
    gone, failed = [], []
    for v in verdicts:
        try:
            client.delete_manifest(v.repository, v.digest, actor)
            gone.append(v)
        except RegistryError as e:
            failed.append(f"{v.repository}:{v.tag}: {e}")
    return gone, failed
