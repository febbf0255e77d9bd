"""Kind Cluster, a Project's cluster binding and an App's placement: validation and the sealed-key view."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from dockyard.admission import InvalidObject, admit
from dockyard.model.app import AppSpec, template_hash, template_of
from dockyard.model.cluster import SEALED, ClusterHealth, ClusterSpec, check_endpoint_url, public_spec
from dockyard.model.project import ProjectSpec

CERT = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUQ2Vy\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkZ\n-----END EC PRIVATE KEY-----\n"
TLS = {"ca": CERT, "cert": CERT, "key": KEY}


def fields(kind: str, body: dict) -> dict[str, str]:
    with pytest.raises(InvalidObject) as e:
        admit(kind, body)
    return {f.field: f.message for f in e.value.errors}


def cluster(spec: dict) -> dict:
    return {"kind": "Cluster", "metadata": {"name": "eu-swarm"}, "spec": spec}


@pytest.mark.parametrize("url", ["unix:///run/docker.sock", "tcp://10.98.0.2:2376", "tcp://node-1.example:2375",
                                 "ssh://ops@10.0.0.5", "ssh://ops@10.0.0.5:2222", "ssh://host"])
def test_engine_urls_dockyard_can_reach(url: str) -> None:
    check_endpoint_url(url)


@pytest.mark.parametrize("url", ["http://10.0.0.1:2375", "tcp://10.0.0.1", "tcp://:2375", "unix://docker.sock",
                                 "unix:///", "tcp://10.0.0.1:99999", "ssh://u:pw@host", "10.0.0.1:2375",
                                 "tcp://10.0.0.1:2375/path"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        check_endpoint_url(url)


def test_a_swarm_with_tls_and_socket_endpoints_is_admitted() -> None:
    a = admit("Cluster", cluster({"driver": "swarm", "endpoints": [
        {"url": "tcp://10.98.0.2:2376", "tls": TLS}, {"url": "unix:///tmp/m2/docker.sock"}]}))
    assert a.scope == "" and a.name == "eu-swarm"
    assert a.spec["endpoints"][0]["tls"]["key"] == KEY


def test_cluster_spec_errors_name_their_fields() -> None:
    assert "spec.endpoints" in fields("Cluster", cluster({"endpoints": []}))
    errs = fields("Cluster", cluster({"endpoints": [{"url": "tcp://10.0.0.1:1", "tls": {"ca": "x", "cert": CERT}}]}))
    assert "PEM certificate" in errs["spec.endpoints[0].tls.ca"]
    errs = fields("Cluster", cluster({"endpoints": [{"url": "tcp://10.0.0.1:1", "tls": {"ca": CERT, "cert": CERT}}]}))
    assert "give ca, cert and key together" in errs["spec.endpoints[0].tls"]
    errs = fields("Cluster", cluster({"endpoints": [{"url": "unix:///s.sock", "tls": TLS}]}))
    assert "tcp:// endpoints only" in errs["spec.endpoints[0]"]
    errs = fields("Cluster", cluster({"endpoints": [{"url": "tcp://a:1", "tls": {**TLS, "key": CERT}}]}))
    assert "private key" in errs["spec.endpoints[0].tls.key"]
    eight = [{"url": f"tcp://10.0.0.{i}:2375"} for i in range(8)]
    assert "at most 7" in fields("Cluster", cluster({"endpoints": eight}))["spec.endpoints"]
    twice = [{"url": "tcp://a:1"}, {"url": "tcp://a:1"}]
    assert "given twice" in fields("Cluster", cluster({"endpoints": twice}))["spec"]
    two_engines = {"driver": "docker", "endpoints": [{"url": "tcp://a:1"}, {"url": "tcp://b:1"}]}
    assert "one engine" in fields("Cluster", cluster(two_engines))["spec"]
    assert "unknown scheme" in fields("Cluster", cluster({"endpoints": [{"url": "ftp://a:1"}]}))["spec.endpoints[0].url"]


def test_the_sealed_marker_and_the_stored_form_are_accepted() -> None:
    ClusterSpec.model_validate({"endpoints": [{"url": "tcp://a:1", "tls": {**TLS, "key": SEALED}}]})
    stored = {"endpoints": [{"url": "tcp://a:1", "tls": {"ca": CERT, "cert": CERT, "keyCiphertext": "gAAA",
                                                           "keyId": "k1", "keySha256": "ab"}}]}
    ClusterSpec.model_validate(stored)
    shown = public_spec(stored)
    assert shown["endpoints"][0]["tls"] == {"ca": CERT, "cert": CERT, "key": SEALED}
    assert stored["endpoints"][0]["tls"]["keyCiphertext"] == "gAAA"  # the stored spec is left alone


def test_health_gives_the_status_fields() -> None:
    h = ClusterHealth("eu", "Unavailable", False, "no leader", managers_total=3, managers_reachable=1)
    assert h.status_fields() == {"phase": "Unavailable", "writable": False, "message": "no leader",
                                 "activeEndpoint": None, "managers": {"total": 3, "reachable": 1},
                                 "nodes": {"total": 0, "ready": 0}}


def test_a_project_is_on_the_local_engine_unless_it_says() -> None:
    spec = ProjectSpec()
    assert spec.cluster == "local" and spec.network.encrypted is False
    spec = ProjectSpec.model_validate({"cluster": "eu-swarm", "network": {"encrypted": True}})
    assert spec.cluster == "eu-swarm" and spec.network.encrypted
    with pytest.raises(ValidationError):
        ProjectSpec.model_validate({"cluster": "EU swarm"})


def app(**spec: object) -> dict:
    return {"kind": "App", "metadata": {"name": "web", "project": "acme/shop"}, "spec": {"image": "demo:1", **spec}}


def test_placement_takes_swarm_constraints_and_spread() -> None:
    a = admit("App", app(placement={"constraints": ["node.labels.zone==a", "node.role != manager",
                                                    "engine.labels.disk==ssd", "node.hostname==w1"],
                                    "spread": ["node.labels.zone"], "maxReplicasPerNode": 2}))
    assert a.spec["placement"]["maxReplicasPerNode"] == 2


def test_placement_errors_name_the_entry() -> None:
    errs = fields("App", app(placement={"constraints": ["node.labels.zone==a", "zone=a"]}))
    assert "not a placement constraint" in errs["spec.placement.constraints[1]"]
    errs = fields("App", app(placement={"constraints": ["node.labels.zone==a; rm -rf /"]}))
    assert "spec.placement.constraints[0]" in errs
    errs = fields("App", app(placement={"spread": ["node.hostname"]}))
    assert "spread preference" in errs["spec.placement.spread[0]"]
    errs = fields("App", app(placement={"constraints": [f"node.labels.k{i}==v" for i in range(21)]}))
    assert "spec.placement.constraints" in errs
    assert "spec.placement.maxReplicasPerNode" in fields("App", app(placement={"maxReplicasPerNode": 0}))


def test_placement_is_part_of_the_template_and_an_empty_one_changes_nothing() -> None:
    plain = template_hash(template_of(AppSpec.model_validate({"image": "demo:1"})))
    empty = AppSpec.model_validate({"image": "demo:1", "placement": {"constraints": [], "spread": []}})
    assert empty.placement is None and template_hash(template_of(empty)) == plain
    placed = AppSpec.model_validate({"image": "demo:1", "placement": {"spread": ["node.labels.zone"]}})
    assert template_hash(template_of(placed)) != plain
