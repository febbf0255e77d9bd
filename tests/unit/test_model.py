"""Model validation as a user meets it: quantities, image references, names, label selectors,
rollout strategy arithmetic and the template hash that decides when containers are recreated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dockyard.model.app import APP_STATES, AppSpec, Strategy, app_state, template_hash, template_of, without_restart
from dockyard.model.image import parse_image
from dockyard.model.meta import check_dns_label, check_labels, check_project_ref
from dockyard.model.quantity import format_memory, parse_cpu, parse_duration, parse_memory
from dockyard.store.selectors import parse_selector

Ki, Mi, Gi = 1024, 1024**2, 1024**3

# --- quantities -----------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("128Mi", 128 * Mi), ("1Gi", Gi), ("64Ki", 64 * Ki), ("1.5Gi", int(1.5 * Gi)),
    ("500M", 500_000_000), ("1G", 1_000_000_000), ("2k", 2000),
    ("512m", 512 * Mi), ("1g", Gi),  # compose style: lower-case m/g are binary megabytes/gigabytes
    ("100kb", 100_000), ("1MB", 1_000_000), ("1048576", Mi), (" 256Mi ", 256 * Mi),
    (1048576, Mi), (0, 0),
])
def test_parse_memory(text: str | int, expected: int) -> None:
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["lots", "", "10Xi", "1.2.3Mi", "Mi", "-1Mi", "1 0Mi", True, -5])
def test_parse_memory_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_memory(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "expected"), [
    ("500m", 0.5), ("2", 2.0), ("0.25", 0.25), ("1500m", 1.5), (2, 2.0), (0.5, 0.5),
])
def test_parse_cpu(text: str | float, expected: float) -> None:
    assert parse_cpu(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["abc", "1.5 cores", "", "m", "-1", True, -1])
def test_parse_cpu_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_cpu(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "expected"), [
    ("10s", 10), ("1m30s", 90), ("500ms", 0.5), ("2h", 7200), ("1d", 86400), ("1h1m1s", 3661),
    ("1.5s", 1.5), ("30", 30), (5, 5), (0.25, 0.25), ("0s", 0),
])
def test_parse_duration(text: str | float, expected: float) -> None:
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize("bad", ["", "ten", "10x", "1m 30s", "s", "10s5", True, -1])
def test_parse_duration_rejects(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["-5", "nan", "inf"])
def test_parse_duration_rejects_negative_and_non_finite_strings(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_memory_round_trips() -> None:
    assert format_memory(256 * Mi) == "256Mi"
    assert format_memory(2 * Gi) == "2Gi"
    assert format_memory(1000) == "1000"
    assert parse_memory(format_memory(3 * Ki)) == 3 * Ki


def test_app_memory_limit_has_engine_minimum() -> None:
    with pytest.raises(ValidationError, match="at least 6Mi"):
        AppSpec.model_validate({"image": "busybox", "resources": {"memory": "1Mi"}})
    AppSpec.model_validate({"image": "busybox", "resources": {"memory": "6Mi", "cpu": "250m"}})


def test_app_requests_may_not_exceed_limits() -> None:
    with pytest.raises(ValidationError, match="requests.memory must not exceed"):
        AppSpec.model_validate({"image": "busybox", "resources": {"memory": "64Mi", "requests": {"memory": "1Gi"}}})
    spec = AppSpec.model_validate({"image": "busybox", "resources": {"limits": {"cpu": "1"},
                                                                     "requests": {"cpu": "500m"}}})
    assert spec.resources.request_cpu() == 0.5
    assert spec.resources.limit_cpu() == 1.0


# --- image references -----------------------------------------------------------------------


@pytest.mark.parametrize(("ref", "domain", "path", "tag", "digest"), [
    ("busybox", None, "busybox", None, None),
    ("acme/web:1.2", None, "acme/web", "1.2", None),
    ("127.0.0.1:5000/acme/shop/web:1", "127.0.0.1:5000", "acme/shop/web", "1", None),
    ("localhost/x@sha256:" + "ab" * 32, "localhost", "x", None, "sha256:" + "ab" * 32),
    ("[::1]:5000/x", "[::1]:5000", "x", None, None),
    ("registry.example.com/team/app:v2.0-rc.1", "registry.example.com", "team/app", "v2.0-rc.1", None),
    ("my_org/my-app__x:latest", None, "my_org/my-app__x", "latest", None),
])
def test_valid_image_references(ref: str, domain: str | None, path: str, tag: str | None,
                                 digest: str | None) -> None:
    parsed = parse_image(ref)
    assert (parsed.domain, parsed.path, parsed.tag, parsed.digest) == (domain, path, tag, digest)
    assert parsed.explicit_registry == (domain is not None)


@pytest.mark.parametrize("ref", [
    "UPPER", "a b", "web:", ":tag", "x@sha256:short", "", " busybox", "busybox ", "Acme/web", "web:tag with space",
    "x@sha256:" + "A" * 64, "-web", "web//x", "web:" + "a" * 129,
])
def test_invalid_image_references(ref: str) -> None:
    with pytest.raises(ValueError):
        parse_image(ref)


def test_app_spec_reports_bad_image() -> None:
    with pytest.raises(ValidationError) as exc:
        AppSpec.model_validate({"image": "UPPER"})
    assert exc.value.errors()[0]["loc"] == ("image",)


# --- names and labels -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["web", "a", "a-1", "1st", "x" * 63, "my-app-2"])
def test_valid_dns_labels(name: str) -> None:
    assert check_dns_label(name) == name


@pytest.mark.parametrize("name", ["", "Web", "-a", "a-", "a_b", "a.b", "x" * 64, "a b", "é"])
def test_invalid_dns_labels(name: str) -> None:
    with pytest.raises(ValueError, match="not a valid name"):
        check_dns_label(name)


def test_project_reference() -> None:
    assert check_project_ref("acme/shop") == "acme/shop"
    for bad in ("acme", "acme/shop/x", "Acme/shop", "acme/"):
        with pytest.raises(ValueError):
            check_project_ref(bad)


def test_label_keys_and_values() -> None:
    assert check_labels({"tier": "web", "example.com/team": "a_b.c-1", "empty": ""})
    for bad in ({"bad key": "x"}, {"tier": "has space"}, {"tier": "x" * 64}, {"-x": "y"}):
        with pytest.raises(ValueError):
            check_labels(bad)


# --- label selectors ------------------------------------------------------------------------


def test_selector_parses_every_operator() -> None:
    sel = parse_selector("app=web, tier!=db,env in (prod, staging),!legacy,team,zone notin (x),ver==2")
    ops = [(r.key, r.op, r.values) for r in sel.requirements]
    assert ops == [
        ("app", "=", ("web",)), ("tier", "!=", ("db",)), ("env", "in", ("prod", "staging")),
        ("legacy", "!exists", ()), ("team", "exists", ()), ("zone", "notin", ("x",)), ("ver", "=", ("2",)),
    ]


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ("app=web", {"app": "web"}, True),
    ("app=web", {"app": "api"}, False),
    ("app=web", {}, False),
    ("tier!=db", {}, True),
    ("tier!=db", {"tier": "db"}, False),
    ("env in (prod,staging)", {"env": "staging"}, True),
    ("env in (prod,staging)", {"env": "dev"}, False),
    ("env in (prod,staging)", {}, False),
    ("env notin (prod)", {}, True),
    ("env notin (prod)", {"env": "prod"}, False),
    ("team", {"team": ""}, True),
    ("team", {}, False),
    ("!legacy", {"legacy": "true"}, False),
    ("!legacy", {"app": "web"}, True),
    ("app=web,!legacy", {"app": "web", "legacy": "yes"}, False),
    ("app=web,!legacy", {"app": "web"}, True),
    ("", {"anything": "x"}, True),
])
def test_selector_matching(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_selector(selector).matches(labels) is expected


@pytest.mark.parametrize("bad", ["a b", "env in a,b", "env in (a,b", "!", "=web", "app web", "(x)", "app=(x)"])
def test_selector_errors_name_the_bad_term(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a selector term"):
        parse_selector(bad)


def test_selector_rejects_value_with_operator_characters() -> None:
    with pytest.raises(ValueError):
        parse_selector("app=web=x")


# --- rollout strategy -----------------------------------------------------------------------


@pytest.mark.parametrize(("surge", "unavailable", "replicas", "expected"), [
    (1, 0, 5, (1, 0)),
    ("25%", "25%", 10, (3, 2)),     # surge rounds up, unavailable rounds down
    ("25%", "25%", 4, (1, 1)),
    ("50%", 0, 3, (2, 0)),
    ("0%", "10%", 5, (0, 1)),       # both resolve to 0: one may be unavailable so the rollout progresses
    ("10%", "0%", 0, (0, 0)),
    (3, "100%", 4, (3, 4)),
])
def test_strategy_resolve(surge: int | str, unavailable: int | str, replicas: int,
                          expected: tuple[int, int]) -> None:
    s = Strategy.model_validate({"maxSurge": surge, "maxUnavailable": unavailable})
    assert s.resolve(replicas) == expected


@pytest.mark.parametrize("fields", [
    {"maxSurge": 0, "maxUnavailable": 0},
    {"maxSurge": "0%", "maxUnavailable": "0%"},
    {"maxSurge": "150%"},
    {"maxSurge": -1},
    {"maxUnavailable": "ten"},
    {"maxSurge": "5 %"},
    {"type": "BlueGreen"},
    {"progressDeadlineSeconds": 1},
])
def test_strategy_rejects(fields: dict) -> None:
    with pytest.raises(ValidationError):
        Strategy.model_validate(fields)


def test_recreate_strategy_may_have_zero_surge_and_unavailable() -> None:
    s = Strategy.model_validate({"type": "Recreate", "maxSurge": 0, "maxUnavailable": 0})
    assert s.type == "Recreate"


# --- template hash --------------------------------------------------------------------------


def _hash(**spec: object) -> str:
    return template_hash(template_of(AppSpec.model_validate({"image": "busybox:1", **spec})))


def test_template_hash_ignores_scaling_and_rollout_settings() -> None:
    base = _hash()
    assert _hash(replicas=5) == base
    assert _hash(replicas=0, strategy={"maxSurge": "50%"}) == base
    assert _hash(dependsOn=["db"]) == base


def test_template_hash_changes_with_what_runs() -> None:
    base = _hash()
    changed = {
        "image": _hash(image="busybox:2"),
        "env": _hash(env={"MODE": "fast"}),
        "env value": _hash(env={"MODE": "slow"}),
        "command": _hash(command=["sleep", "1"]),
        "memory": _hash(resources={"memory": "64Mi"}),
        "port": _hash(ports=[{"containerPort": 80}]),
    }
    assert base not in changed.values()
    assert len(set(changed.values())) == len(changed)


def test_template_hash_is_stable_and_order_independent() -> None:
    a = _hash(env={"A": "1", "B": "2"}, labels={"x": "1", "y": "2"})
    b = _hash(labels={"y": "2", "x": "1"}, env={"A": "1", "B": "2"})
    assert a == b
    # env written as a mapping or as a list is the same template
    assert _hash(env={"A": "1"}) == _hash(env=[{"name": "A", "value": "1"}])
    assert len(a) == 12 and all(c in "0123456789abcdef" for c in a)


def test_restart_marker_is_part_of_the_template() -> None:
    base = _hash()
    assert _hash(restartedAt="2024-05-01T12:00:00Z") != base, "a restart must roll the replicas"
    assert _hash(restartedAt="2024-05-01T12:00:00Z") != _hash(restartedAt="2024-05-01T12:00:01Z")
    template = template_of(AppSpec.model_validate({"image": "busybox:1", "restartedAt": "2024-05-01T12:00:00Z"}))
    assert without_restart(template) == template_of(AppSpec.model_validate({"image": "busybox:1"}))


@pytest.mark.parametrize("bad", ["yesterday", "2024-13-01T00:00:00Z", "", "x" * 41])
def test_restart_marker_must_be_a_timestamp(bad: str) -> None:
    with pytest.raises(ValidationError) as e:
        AppSpec.model_validate({"image": "busybox:1", "restartedAt": bad})
    assert e.value.errors()[0]["loc"] == ("restartedAt",)


# --- app state --------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "state"), [
    ({"phase": "Ready"}, "ready"),
    ({"phase": "Degraded"}, "degraded"),
    ({"phase": "Stalled"}, "failed"),
    ({"phase": "Failed"}, "failed"),
    ({"phase": "Progressing"}, "progressing"),
    ({"phase": "Pending"}, "progressing"),
    ({}, "progressing"),
    ({"phase": "SomethingNew"}, "progressing"),
])
def test_app_state_in_one_word(status: dict, state: str) -> None:
    assert app_state(status) == state
    assert state in APP_STATES
