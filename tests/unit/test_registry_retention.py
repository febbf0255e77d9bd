"""Retention selection (registry/retention.py): which tags a project's rules let go."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dockyard.admission import InvalidObject, admit
from dockyard.model.project import RetentionRule
from dockyard.registry.images import TagRecord
from dockyard.registry.retention import plan

AT = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def tag(name: str, t: str, days_ago: float, digest: str | None = None) -> TagRecord:
    return TagRecord(f"acme/shop/{name}", t, digest or f"sha256:{name}-{t}", 100, "m", AT - timedelta(days=days_ago),
                     "alice")


def rule(**kw) -> RetentionRule:  # noqa: ANN003
    return RetentionRule.model_validate(kw)


def run(rules: list[RetentionRule], tags: list[TagRecord], in_use=frozenset(), digests=frozenset()):  # noqa: ANN001, ANN201
    p = plan(rules, tags, in_use=set(in_use), digests_in_use=set(digests), at=AT)
    return sorted(f"{v.repository.split('/', 2)[2]}:{v.tag}" for v in p.delete), \
        sorted(f"{v.repository.split('/', 2)[2]}:{v.tag}" for v in p.protected)


def test_keep_last_keeps_the_newest_matching_tags_per_repository() -> None:
    tags = [tag("web", f"v{i}", days_ago=10 - i) for i in range(5)] + [tag("api", "v1", 30), tag("api", "v2", 20)]
    delete, _ = run([rule(tags="v*", keepLast=2)], tags)
    assert delete == ["web:v0", "web:v1", "web:v2"]  # api has only two


def test_tags_no_rule_matches_stay() -> None:
    tags = [tag("web", "v1", 50), tag("web", "latest", 50), tag("web", "v2", 1)]
    delete, _ = run([rule(tags="v*", keepLast=1)], tags)
    assert delete == ["web:v1"]


def test_repository_glob() -> None:
    tags = [tag("web", "a", 5), tag("web", "b", 1), tag("tools/x", "a", 5), tag("tools/x", "b", 1)]
    delete, _ = run([rule(repositories="tools/*", keepLast=1)], tags)
    assert delete == ["tools/x:a"]


def test_keep_days_and_keep_last_keep_the_union() -> None:
    tags = [tag("web", "old", 40), tag("web", "mid", 10), tag("web", "new", 1), tag("web", "newer", 0.5)]
    assert run([rule(keepDays=7)], tags)[0] == ["web:mid", "web:old"]
    assert run([rule(keepDays=7, keepLast=3)], tags)[0] == ["web:old"]
    assert run([rule(keepLast=0)], tags)[0] == ["web:mid", "web:new", "web:newer", "web:old"]


def test_a_tag_any_rule_keeps_stays() -> None:
    tags = [tag("web", "v1", 30), tag("web", "v2", 20), tag("web", "v3", 1)]
    delete, _ = run([rule(keepLast=1), rule(tags="v1", keepDays=365)], tags)
    assert delete == ["web:v2"]


def test_tags_in_use_and_shared_digests_are_protected() -> None:
    tags = [tag("web", "v1", 30), tag("web", "v2", 20, digest="sha256:same"), tag("web", "stable", 25, digest="sha256:same"),
            tag("web", "v3", 10, digest="sha256:running"), tag("web", "v4", 1)]
    delete, protected = run([rule(tags="v*", keepLast=1)], tags, in_use={("acme/shop/web", "v1")},
                            digests={"sha256:running"})
    assert delete == []
    assert protected == ["web:v1", "web:v2", "web:v3"]


def test_two_doomed_tags_of_one_digest_both_go() -> None:
    tags = [tag("web", "a", 30, digest="sha256:x"), tag("web", "b", 30, digest="sha256:x"), tag("web", "c", 1)]
    assert run([rule(keepLast=1)], tags)[0] == ["web:a", "web:b"]


def test_rules_are_validated_with_field_names() -> None:
    body = {"apiVersion": "dockyard/v1", "kind": "Project", "metadata": {"name": "p", "tenant": "t"},
            "spec": {"registry": {"retention": [{"keepLast": 3}, {"tags": "v*", "keepDays": -1}]}}}
    with pytest.raises(InvalidObject) as e:
        admit("Project", body, scope="t")
    assert [x.field for x in e.value.errors] == ["spec.registry.retention[1].keepDays"]
    body["spec"]["registry"]["retention"] = [{"tags": "v*"}]
    with pytest.raises(InvalidObject) as e:
        admit("Project", body, scope="t")
    assert "keepLast" in e.value.errors[0].message


def test_every_tag_gets_a_verdict_with_the_reason() -> None:
    tags = [tag("web", "v1", 30), tag("web", "v2", 20), tag("web", "v3", 10, digest="sha256:run"),
            tag("web", "v4", 5, digest="sha256:old"), tag("web", "v5", 1), tag("web", "latest", 1, digest="sha256:v5"),
            tag("web", "v6", 40, digest="sha256:v5")]
    p = plan([rule(tags="v*", keepLast=1), rule(tags="v4", keepDays=7)], tags,
             in_use={("acme/shop/web", "v2"): "in use by App web"},
             digests_in_use={"sha256:run": "in the rollout history of App web revision 1"}, at=AT)
    why = {v.tag: v.reason for v in p.delete + p.protected + p.kept}
    assert [v.tag for v in p.delete] == ["v1"] and why["v1"].startswith("rule 1 (")
    assert why["v2"] == "in use by App web"
    assert why["v3"] == "in the rollout history of App web revision 1"
    assert why["v4"].startswith("rule 2: keepDays 7")
    assert why["v5"] == "rule 1: keepLast 1 (newest 1 of 6 matching)"
    assert why["latest"] == "no rule matches it"
    assert why["v6"] == "its digest is also the digest of a tag that stays (latest)"
