"""Tag retention: which tags of a project a policy lets go (pure), and applying that to the
registry (deleting their manifests).

Rules are `spec.registry.retention` of the project (model/project.py RetentionRule). For each
rule and each repository, the tags matching both globs are ordered by push time; the `keepLast`
newest and those pushed within `keepDays` are kept. A tag goes only when at least one rule matches
it and no rule keeps it. It never goes when

- an App of the project names it, or an App runs the digest it points to or has it in its rollout
  history: running workloads, their next restart and a rollback must find their image;
- another tag that stays points to the same digest: the registry deletes manifests, not tags, so
  deleting it would take the kept tag along;
- Dockyard has no push time for it (pushed while it was not listening): an unknown age is not old.
"""

from __future__ import annotations

import fnmatch
import logging
from collections import defaultdict
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


def _kept_by(rule: RetentionRule, ordered: list[TagRecord], at: datetime) -> set[str]:
    keep = set()
    if rule.keep_last is not None:
        keep |= {r.tag for r in ordered[:rule.keep_last]}
    if rule.keep_days is not None:
        since = at - timedelta(days=rule.keep_days)
        keep |= {r.tag for r in ordered if r.pushed_at >= since}
    return keep


def select_deletions(rules: list[RetentionRule], tags: list[TagRecord], *, in_use: set[tuple[str, str]],
                     digests_in_use: set[str], at: datetime) -> tuple[list[Verdict], list[Verdict]]:
    """(tags to delete, tags a rule would delete but that are protected), both with the reason.
    `in_use`: (repository, tag) pairs Apps name; `digests_in_use`: digests Apps run."""
    by_repo: dict[str, list[TagRecord]] = defaultdict(list)
    for t in tags:
        by_repo[t.repository].append(t)
    doomed: dict[tuple[str, str], str] = {}
    kept: set[tuple[str, str]] = set()
    for repo, found in by_repo.items():
        name = repo.split("/", 2)[2]
        for i, rule in enumerate(rules):
            if not fnmatch.fnmatchcase(name, rule.repositories):
                continue
            matching = sorted((t for t in found if fnmatch.fnmatchcase(t.tag, rule.tags)),
                              key=lambda t: (t.pushed_at, t.tag), reverse=True)
            keep = _kept_by(rule, matching, at)
            for t in matching:
                if t.tag in keep:
                    kept.add((repo, t.tag))
                else:
                    doomed.setdefault((repo, t.tag), f"rule {i + 1} ({_describe(rule)})")
    record = {(t.repository, t.tag): t for t in tags}
    staying_digests = {(t.repository, t.digest) for t in tags if (t.repository, t.tag) not in doomed
                       or (t.repository, t.tag) in kept}
    delete, protected = [], []
    for key, why in sorted(doomed.items()):
        if key in kept:
            continue
        t = record[key]
        if key in in_use or t.digest in digests_in_use:
            protected.append(Verdict(t.repository, t.tag, t.digest, t.pushed_at, "in use by an App or its rollout history"))
        elif (t.repository, t.digest) in staying_digests:
            protected.append(Verdict(t.repository, t.tag, t.digest, t.pushed_at,
                                     "its digest is also the digest of a tag that stays"))
        else:
            delete.append(Verdict(t.repository, t.tag, t.digest, t.pushed_at, why))
    return delete, protected


def _describe(rule: RetentionRule) -> str:
    keeps = []
    if rule.keep_last is not None:
        keeps.append(f"keepLast {rule.keep_last}")
    if rule.keep_days is not None:
        keeps.append(f"keepDays {rule.keep_days}")
    return f"repositories {rule.repositories!r}, tags {rule.tags!r}: {', '.join(keeps)}"


def images_in_use(store: Store, settings: RegistrySettings | None, tenant: str, project: str
                  ) -> tuple[set[tuple[str, str]], set[str]]:
    """(repository, tag) pairs the project's Apps name, and the digests Apps run or their rollout
    history names (a rollback restores those exactly)."""
    scope = f"{tenant}/{project}"
    tags = set()
    for app in store.list("App", scope=scope)[0]:
        target = autodeploy.image_target(settings, scope, app.spec.get("image", ""))
        if target is not None:
            tags.add((target.repository, target.tag))
    return tags, untagged.pinned_digests(store)


def plan_project(store: Store, settings: RegistrySettings | None, tenant: str, project: str,
                 at: datetime | None = None) -> tuple[list[Verdict], list[Verdict]]:
    """What the project's policy deletes now, and what it would but may not."""
    spec = ProjectSpec.model_validate(store.get("Project", tenant, project).spec)
    if not spec.registry.retention:
        return [], []
    in_use, digests = images_in_use(store, settings, tenant, project)
    return select_deletions(spec.registry.retention, ImageRecords(store).project_tags(tenant, project),
                            in_use=in_use, digests_in_use=digests, at=at or now())


def apply(client: RegistryClient, verdicts: list[Verdict], actor: str = "retention") -> list[str]:
    """Delete the manifests for `actor` (whom the registry's notifications name); the failures,
    one line each (the rest went)."""
    failed = []
    for v in verdicts:
        try:
            client.delete_manifest(v.repository, v.digest, actor)
        except RegistryError as e:
            failed.append(f"{v.repository}:{v.tag}: {e}")
    return failed
