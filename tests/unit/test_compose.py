"""Compose Spec import: samples, translation of each key, warnings, refusals and interpolation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from dockyard.compose.convert import (
    FORBIDDEN,
    ComposeError,
    ComposeIssue,
    ComposeResult,
    convert_compose,
    looks_like_compose,
)
from dockyard.model.app import App

SAMPLES = Path(__file__).parent / "compose_samples"
PROJECT = "acme/shop"
COMMON_ENV = (SAMPLES / "common.env").read_text()


def load(name: str) -> dict:
    return yaml.safe_load((SAMPLES / name).read_text())


def convert_yaml(text: str, **kwargs) -> ComposeResult:
    return convert_compose(yaml.safe_load(textwrap.dedent(text)), PROJECT, **kwargs)


def service(**keys) -> dict:
    """A one-service file ("web") with a declared volume "data" to mount."""
    return {"services": {"web": {"image": "nginx:1.25", **keys}}, "volumes": {"data": None}}


def spec_of(doc: dict, **kwargs) -> dict:
    (item,) = convert_compose(doc, PROJECT, **kwargs).items
    return item["spec"]


def issues_of(doc: dict, **kwargs) -> list[ComposeIssue]:
    with pytest.raises(ComposeError) as info:
        convert_compose(doc, PROJECT, **kwargs)
    return info.value.issues


def warnings_of(doc: dict, **kwargs) -> list[ComposeIssue]:
    return convert_compose(doc, PROJECT, **kwargs).warnings


def by_name(result: ComposeResult) -> dict[str, dict]:
    return {item["metadata"]["name"]: item for item in result.items}


def env_of(spec: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in spec.get("env", [])}


# ---------------------------------------------------------------------------------------------
# Samples
# ---------------------------------------------------------------------------------------------

GOOD_SAMPLES = {
    "wordpress.yaml": ["db", "wordpress"],
    "redis-worker-web.yaml": ["redis", "worker", "web"],
    "anchors-extensions.yaml": ["scheduler", "postgres", "api"],
    "gitea.yaml": ["db", "server", "backup"],
}


@pytest.mark.parametrize("name", sorted(GOOD_SAMPLES))
def test_sample_converts_to_valid_apps_in_dependency_order(name):
    result = convert_compose(load(name), PROJECT, files={"./common.env": COMMON_ENV},
                             env={"DB_PASSWORD": "s3cret"})
    assert [item["metadata"]["name"] for item in result.items] == GOOD_SAMPLES[name]
    for item in result.items:
        app = App.model_validate(item)
        assert app.metadata.project == PROJECT
        assert item["metadata"]["labels"] == {"compose.dockyard.io/service": app.metadata.name}
    emitted: set[str] = set()
    for item in result.items:  # every dependency comes before its dependant
        assert set(item["spec"].get("dependsOn", [])) <= emitted
        emitted.add(item["metadata"]["name"])


def test_wordpress_sample():
    result = convert_compose(load("wordpress.yaml"), PROJECT)
    apps = by_name(result)
    db, wp = apps["db"]["spec"], apps["wordpress"]["spec"]
    assert db["args"] == ["--default-authentication-plugin=mysql_native_password",
                          "--character-set-server=utf8mb4"]
    assert db["ports"] == [{"containerPort": 3306, "protocol": "tcp"},
                           {"containerPort": 33060, "protocol": "tcp"}]
    assert env_of(db)["MYSQL_ROOT_PASSWORD"] == "somewordpress"  # ${VAR:-default}
    assert db["volumes"] == [{"name": "db-data", "mountPath": "/var/lib/mysql", "readOnly": False}]
    assert wp["dependsOn"] == ["db"]
    assert wp["ports"] == [{"containerPort": 80, "protocol": "tcp"}]
    assert wp["restartPolicy"] == "always"
    paths = [w.path for w in result.warnings]
    assert "volumes.db_data" in paths and "services.wordpress.ports[0]" in paths
    renamed = next(w for w in result.warnings if w.path == "volumes.db_data")
    assert "'db-data'" in renamed.message


def test_redis_worker_web_sample():
    result = convert_compose(load("redis-worker-web.yaml"), PROJECT)
    apps = by_name(result)
    web, worker, redis = apps["web"]["spec"], apps["worker"]["spec"], apps["redis"]["spec"]
    assert web["replicas"] == 2
    assert web["resources"] == {"limits": {"cpu": "1.0", "memory": "512Mi"},
                                "requests": {"cpu": "0.25", "memory": "256Mi"}}
    assert web["healthcheck"] == {
        "exec": {"command": ["/bin/sh", "-c", "curl -fsS http://localhost:8000/healthz || exit 1"]},
        "interval": "30s", "timeout": "5s", "startPeriod": "1m30s", "retries": 3,
    }
    assert web["strategy"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert web["restartPolicy"] == "on-failure"
    assert web["dependsOn"] == ["redis", "worker"]
    assert env_of(web) == {"REDIS_URL": "redis://redis:6379/0", "WEB_CONCURRENCY": "4", "DEBUG": "false"}
    assert worker["command"] == ["celery"]
    assert worker["args"] == ["-A", "shop", "worker", "--loglevel=info", "--concurrency", "2"]
    assert worker["resources"] == {"limits": {"cpu": "0.5", "memory": "1Gi"}}
    assert worker["replicas"] == 3
    assert redis["healthcheck"]["exec"]["command"] == ["redis-cli", "ping"]
    assert redis["volumes"] == [{"name": "redis-data", "mountPath": "/data", "readOnly": False}]
    assert redis["restartPolicy"] == "always"
    messages = {w.path: w.message for w in result.warnings}
    assert "unless-stopped" in messages["services.redis.restart"]
    assert "stop_grace_period" in messages["services.worker.stop_grace_period"]
    assert "delay" in messages["services.web.deploy.update_config.delay"]


def test_anchors_extensions_sample():
    result = convert_compose(load("anchors-extensions.yaml"), PROJECT, files={"./common.env": COMMON_ENV},
                             env={"DB_PASSWORD": "s3cret", "TAG": "2.3.1"})
    apps = by_name(result)
    api, postgres = apps["api"]["spec"], apps["postgres"]["spec"]
    assert api["image"] == "registry.example.com/acme/api:2.3.1"
    env = env_of(api)
    assert env["PORT"] == "3000"                       # environment overrides env_file
    assert env["NODE_ENV"] == "production"            # from env_file
    assert env["LOG_LEVEL"] == "info"                  # bare LOG_LEVEL with no value: env_file's stays
    bare = next(w for w in result.warnings if w.path == "services.api.environment.LOG_LEVEL")
    assert "the env_file value is kept" in bare.message
    assert env["DATABASE_URL"] == "postgres://api:s3cret@postgres:5432/api"
    assert env["PRICE_TEMPLATE"] == "$amount EUR"      # $$ is a literal $
    assert env["GREETING"] == "hello $USER"            # env files are not interpolated
    assert api["ports"] == [
        {"containerPort": 3000, "protocol": "tcp"},
        {"containerPort": 3001, "protocol": "tcp"},
        {"containerPort": 3002, "protocol": "tcp"},
        {"containerPort": 9125, "protocol": "udp"},
    ]
    assert api["labels"] == {"com.example.team": "payments", "com.example.tier": "backend"}
    assert api["user"] == "1000:1000" and api["workingDir"] == "/srv/app"
    assert api["restartPolicy"] == "on-failure"
    assert apps["scheduler"]["spec"]["resources"] == {"limits": {"memory": "256Mi"}}
    assert postgres["volumes"][1] == {"name": "pgbackup", "mountPath": "/backup", "readOnly": True}
    assert postgres["healthcheck"]["exec"]["command"] == ["/bin/sh", "-c", "pg_isready -U api"]
    network_warnings = [w for w in result.warnings if "network" in w.message]
    assert len(network_warnings) == 1
    assert "reach each other by service name" in network_warnings[0].message
    assert not any("x-" in w.path or "x-" in w.message for w in result.warnings)
    paths = {w.path for w in result.warnings}
    assert {"services.api.tmpfs", "services.api.read_only", "services.api.logging",
            "services.postgres.container_name", "services.postgres.hostname",
            "services.postgres.shm_size", "volumes.pgbackup.external", "volumes.pgdata.labels"} <= paths


def test_anchors_sample_needs_its_required_variable():
    issues = issues_of(load("anchors-extensions.yaml"), files={"./common.env": COMMON_ENV})
    (issue,) = [i for i in issues if i.path == "services.postgres.environment.POSTGRES_PASSWORD"]
    assert "DB_PASSWORD" in issue.message and "set DB_PASSWORD to the database password" in issue.message


def test_gitea_sample_legacy_resources_and_restart_no():
    result = convert_compose(load("gitea.yaml"), PROJECT, env={"GITEA_DB_PASSWORD": "pw"})
    apps = by_name(result)
    assert apps["db"]["spec"]["resources"] == {"limits": {"cpu": "0.5", "memory": "512Mi"}}
    assert apps["backup"]["spec"]["restartPolicy"] == "never"
    config = {"name": "config", "mountPath": "/etc/gitea", "readOnly": True}
    assert apps["server"]["spec"]["volumes"][1] == config
    assert env_of(apps["server"]["spec"])["GITEA__database__PASSWD"] == "pw"
    assert any(w.path == "services.backup.profiles" for w in result.warnings)


def test_refused_sample_reports_every_problem():
    with pytest.raises(ComposeError) as info:
        convert_compose(load("monitoring-refused.yaml"), PROJECT)
    paths = {i.path for i in info.value.issues}
    assert paths == {
        "secrets",
        "services.node-exporter.pid",
        "services.node-exporter.network_mode",
        "services.node-exporter.volumes[0]",
        "services.node-exporter.volumes[1]",
        "services.cadvisor.privileged",
        "services.cadvisor.devices",
        "services.cadvisor.volumes[0]",
        "services.cadvisor.volumes[1]",
        "services.prometheus.build",
        "services.prometheus.volumes[0]",
        "services.Grafana",
        "services.Grafana.cap_add",
        "services.Grafana.secrets",
    }
    text = str(info.value)
    assert text == "; ".join(str(i) for i in info.value.issues)
    assert "always refused" in text and "docker.sock" in text


# ---------------------------------------------------------------------------------------------
# API shape
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc, expected", [
    ({"services": {"web": {"image": "nginx"}}}, True),
    ({"version": "3.8", "services": {}}, True),
    ({"kind": "App", "services": {}}, False),
    ({"services": ["web"]}, False),
    ({"apiVersion": "dockyard/v1", "kind": "App", "spec": {}}, False),
    ([{"services": {}}], False),
    ("services: {}", False),
    (None, False),
])
def test_looks_like_compose(doc, expected):
    assert looks_like_compose(doc) is expected


def test_error_string_joins_issues_and_keeps_warnings():
    doc = service(build=".", privileged=True, container_name="x")
    doc["services"]["web"].pop("image")
    with pytest.raises(ComposeError) as info:
        convert_compose(doc, PROJECT)
    err = info.value
    assert len(err.issues) == 2
    assert str(err) == "; ".join(f"{i.path}: {i.message}" for i in err.issues)
    assert [w.path for w in err.warnings] == ["services.web.container_name"]


def test_invalid_project_is_an_issue():
    with pytest.raises(ComposeError) as info:
        convert_compose(service(), "shop")
    (issue,) = info.value.issues
    assert issue.path == "project" and "TENANT/PROJECT" in issue.message


def test_minimal_service_and_metadata():
    result = convert_compose({"services": {"web": {"image": "nginx:1.25"}}}, PROJECT)
    assert result.warnings == []
    assert result.items == [{
        "apiVersion": "dockyard/v1", "kind": "App",
        "metadata": {"name": "web", "project": PROJECT, "labels": {"compose.dockyard.io/service": "web"}},
        "spec": {"image": "nginx:1.25"},
    }]


def test_version_name_and_extension_fields_are_silently_ignored():
    result = convert_yaml("""
        version: "3.8"
        name: shop
        x-defaults: {anything: [1, 2]}
        services:
          web:
            image: nginx:1.25
            x-team: web
            deploy:
              x-note: hi
              resources:
                x-why: because
                limits: {memory: 64m, x-more: 1}
            ports:
              - target: 80
                x-doc: hi
        volumes:
          data:
            x-backup: nightly
    """)
    assert result.warnings == []
    assert result.items[0]["spec"]["resources"] == {"limits": {"memory": "64Mi"}}


def test_x_keys_inside_environment_and_labels_are_data():
    spec = spec_of(service(environment={"x-trace": "1"}, labels={"x-owner": "me"}))
    assert env_of(spec) == {"x-trace": "1"}
    assert spec["labels"] == {"x-owner": "me"}


# ---------------------------------------------------------------------------------------------
# Interpolation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, env, expected", [
    ("${VAR}", {"VAR": "a"}, "a"),
    ("$VAR/x", {"VAR": "a"}, "a/x"),
    ("pre-${VAR}-post", {"VAR": "a"}, "pre-a-post"),
    ("${VAR:-dflt}", {}, "dflt"),
    ("${VAR:-dflt}", {"VAR": ""}, "dflt"),
    ("${VAR:-dflt}", {"VAR": "set"}, "set"),
    ("${VAR-dflt}", {}, "dflt"),
    ("${VAR-dflt}", {"VAR": ""}, ""),
    ("${VAR:?must be set}", {"VAR": "ok"}, "ok"),
    ("${VAR?must be set}", {"VAR": ""}, ""),
    ("${VAR:+alt}", {"VAR": "x"}, "alt"),
    ("${VAR:+alt}", {}, ""),
    ("${VAR+alt}", {"VAR": ""}, "alt"),
    ("$$VAR and $${VAR}", {"VAR": "a"}, "$VAR and ${VAR}"),
    ("${A:-${B:-deep}}", {}, "deep"),
    ("${A:-${B}}", {"B": "b"}, "b"),
    ("${A:-x}${B:-y}", {}, "xy"),
    ("no dollars", {}, "no dollars"),
])
def test_interpolation(value, env, expected):
    spec = spec_of(service(environment={"OUT": value}), env=env)
    assert env_of(spec)["OUT"] == expected


def test_interpolation_applies_to_every_string_value_but_not_keys():
    doc = service(image="nginx:${TAG}", command="echo ${WHO}", labels={"${KEY}": "${VAL}"},
                  working_dir="${DIR:-/srv}")
    spec = spec_of(doc, env={"TAG": "1.25", "WHO": "world", "KEY": "k", "VAL": "v"})
    assert spec["image"] == "nginx:1.25"
    assert spec["args"] == ["echo", "world"]
    assert spec["labels"] == {"${KEY}": "v"}
    assert spec["workingDir"] == "/srv"


def test_unset_variable_becomes_empty_with_one_warning():
    doc = service(environment={"A": "${MISSING}", "B": "x${MISSING}y"})
    result = convert_compose(doc, PROJECT)
    assert env_of(result.items[0]["spec"]) == {"A": "", "B": "xy"}
    (warning,) = result.warnings
    assert warning.path == "services.web.environment.A"
    assert "MISSING" in warning.message and "empty string" in warning.message


@pytest.mark.parametrize("value, env, fragment", [
    ("${VAR:?set VAR please}", {}, "required variable VAR is missing a value: set VAR please"),
    ("${VAR:?}", {"VAR": ""}, "required variable VAR is missing a value"),
    ("${VAR?}", {}, "required variable VAR"),
    ("${VAR", {}, "never closed"),
    ("${VAR:x}", {}, "invalid interpolation"),
    ("${}", {}, "invalid interpolation"),
    ("costs $5", {}, "write $$ for a literal $"),
])
def test_interpolation_errors(value, env, fragment):
    (issue,) = issues_of(service(environment={"OUT": value}), env=env)
    assert issue.path == "services.web.environment.OUT"
    assert fragment in issue.message


# ---------------------------------------------------------------------------------------------
# Environment and env_file
# ---------------------------------------------------------------------------------------------


def test_environment_list_and_mapping_forms():
    spec = spec_of(service(environment=["A=1", "B=x=y", "C=", "FROM_ENV"]), env={"FROM_ENV": "e"})
    assert env_of(spec) == {"A": "1", "B": "x=y", "C": "", "FROM_ENV": "e"}
    spec = spec_of(service(environment={"N": 5, "F": 1.5, "T": True, "E": "", "P": None}), env={"P": "p"})
    assert env_of(spec) == {"N": "5", "F": "1.5", "T": "true", "E": "", "P": "p"}


def test_bare_variable_without_value_is_skipped_with_a_warning():
    result = convert_compose(service(environment=["LONELY"]), PROJECT)
    assert "env" not in result.items[0]["spec"]
    (warning,) = result.warnings
    assert warning.path == "services.web.environment.LONELY" and "LONELY" in warning.message


def test_env_file_merge_order():
    files = {"base.env": "A=base\nB=base\nC=base\n", "override.env": "B=override\n"}
    spec = spec_of(service(env_file=["base.env", "override.env"], environment={"C": "env"}), files=files)
    assert env_of(spec) == {"A": "base", "B": "override", "C": "env"}


def test_env_file_syntax():
    text = textwrap.dedent("""\
        # comment

        PLAIN=value
        SPACED = padded
        export EXPORTED=yes
        DQ="double \\"quoted\\" \\n escaped"
        SQ='single $NOT_EXPANDED \\n'
        INLINE=value # a comment
        HASH=a#b
        EMPTY=
        MULTI="-----BEGIN KEY-----
        abc
        -----END KEY-----"
        BARE
    """)
    spec = spec_of(service(env_file="app.env"), files={"app.env": text}, env={"BARE": "from-env"})
    assert env_of(spec) == {
        "PLAIN": "value", "SPACED": "padded", "EXPORTED": "yes",
        "DQ": 'double "quoted" \n escaped', "SQ": "single $NOT_EXPANDED \\n",
        "INLINE": "value", "HASH": "a#b", "EMPTY": "",
        "MULTI": "-----BEGIN KEY-----\nabc\n-----END KEY-----", "BARE": "from-env",
    }


def test_env_file_raw_format_keeps_quotes():
    doc = service(env_file=[{"path": "raw.env", "format": "raw"}])
    spec = spec_of(doc, files={"raw.env": "Q=\"kept\" # too\n"})
    assert env_of(spec) == {"Q": "\"kept\" # too"}


def test_missing_env_file_is_an_error_naming_it():
    (issue,) = issues_of(service(env_file="./secrets.env"))
    assert issue.path == "services.web.env_file"
    assert "./secrets.env" in issue.message


def test_optional_missing_env_file_is_skipped_with_a_warning():
    doc = service(env_file=[{"path": "./local.env", "required": False}, "./base.env"])
    result = convert_compose(doc, PROJECT, files={"./base.env": "A=1"})
    assert env_of(result.items[0]["spec"]) == {"A": "1"}
    (warning,) = result.warnings
    assert warning.path == "services.web.env_file[0]" and "./local.env" in warning.message


def test_env_file_problems():
    # an open quote may span lines, so an unclosed one runs to the end of the file
    files = {"bad.env": '1BAD=x\nOK=1\nBROKEN="never closed\nMORE=1\n'}
    issues = issues_of(service(env_file="bad.env"), files=files)
    messages = [i.message for i in issues]
    assert len(issues) == 2
    assert any("env_file 'bad.env' line 3" in m and "never closed" in m for m in messages)
    assert any("'1BAD' is not a valid environment variable name" in m for m in messages)


# ---------------------------------------------------------------------------------------------
# Command, entrypoint, image
# ---------------------------------------------------------------------------------------------


def test_command_and_entrypoint():
    spec = spec_of(service(entrypoint=["/docker-entrypoint.sh"], command='nginx -g "daemon off;"'))
    assert spec["command"] == ["/docker-entrypoint.sh"]
    assert spec["args"] == ["nginx", "-g", "daemon off;"]
    assert spec_of(service(command=["sleep", 10]))["args"] == ["sleep", "10"]
    assert spec_of(service(entrypoint=[]))["command"] == []


def test_unbalanced_command_quote_is_an_error():
    (issue,) = issues_of(service(command="echo 'oops"))
    assert issue.path == "services.web.command"


@pytest.mark.parametrize("image, fragment", [
    (None, "is required"),
    ("Nginx:latest", "not a valid image reference"),
    (42, "must be a string"),
])
def test_image_problems(image, fragment):
    doc = service(image=image)
    if image is None:
        doc["services"]["web"].pop("image")
    (issue,) = issues_of(doc)
    assert issue.path == "services.web.image" and fragment in issue.message


# ---------------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry, expected, warned", [
    ("80", [(80, "tcp")], False),
    (80, [(80, "tcp")], False),
    ("8080:80", [(80, "tcp")], True),
    ("127.0.0.1:8080:80/udp", [(80, "udp")], True),
    ("127.0.0.1::80", [(80, "tcp")], True),
    ("[::1]:8080:80", [(80, "tcp")], True),
    ("3000-3002", [(3000, "tcp"), (3001, "tcp"), (3002, "tcp")], False),
    ("8000-8001:3000-3001/udp", [(3000, "udp"), (3001, "udp")], True),
    ({"target": 80}, [(80, "tcp")], False),
    ({"target": 80, "published": "8080", "protocol": "udp", "mode": "ingress"}, [(80, "udp")], True),
    ({"target": 53, "host_ip": "127.0.0.1", "protocol": "UDP"}, [(53, "udp")], True),
])
def test_ports(entry, expected, warned):
    result = convert_compose(service(ports=[entry]), PROJECT)
    ports = result.items[0]["spec"]["ports"]
    assert [(p["containerPort"], p["protocol"]) for p in ports] == expected
    assert bool(result.warnings) is warned
    for warning in result.warnings:
        assert warning.path == "services.web.ports[0]"
        assert "not published" in warning.message and "gateway" in warning.message


def test_expose_and_dedup():
    spec = spec_of(service(ports=["80:80", "8080:80", "443"], expose=["80", 9000, "9100-9101/udp"]))
    assert [(p["containerPort"], p["protocol"]) for p in spec["ports"]] == [
        (80, "tcp"), (443, "tcp"), (9000, "tcp"), (9100, "udp"), (9101, "udp")]


def test_named_long_port():
    spec = spec_of(service(ports=[{"target": 8080, "name": "http", "app_protocol": "http"}]))
    assert spec["ports"] == [{"containerPort": 8080, "protocol": "tcp", "name": "http"}]


@pytest.mark.parametrize("entry, path, fragment", [
    ("80/sctp", "services.web.ports[0]", "sctp"),
    ("1:2:3:4", "services.web.ports[0]", "is not a port"),
    ("0", "services.web.ports[0]", "1-65535"),
    ("70000", "services.web.ports[0]", "1-65535"),
    ("1-65535", "services.web.ports[0]", "at most 100"),
    ("http", "services.web.ports[0]", "not a port number"),
    ("127.0.0.1:80", "services.web.ports[0]", "not a host port"),
    ({"published": 80}, "services.web.ports[0].target", "is required"),
    ({"target": 80, "bogus": 1}, "services.web.ports[0].bogus", "unknown key"),
    ({"target": 80, "name": "Not_A_Label"}, "services.web.ports[0].name", "DNS label"),
])
def test_port_errors(entry, path, fragment):
    issues = issues_of(service(ports=[entry]))
    assert any(i.path == path and fragment in i.message for i in issues), issues


# ---------------------------------------------------------------------------------------------
# Volumes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry, expected", [
    ("data:/var/lib/x", {"name": "data", "mountPath": "/var/lib/x", "readOnly": False}),
    ("data:/var/lib/x:ro", {"name": "data", "mountPath": "/var/lib/x", "readOnly": True}),
    ("data:/var/lib/x:rw,z", {"name": "data", "mountPath": "/var/lib/x", "readOnly": False}),
    ({"type": "volume", "source": "data", "target": "/x", "read_only": True},
     {"name": "data", "mountPath": "/x", "readOnly": True}),
    ({"type": "volume", "source": "data", "target": "/x", "volume": {"nocopy": True}},
     {"name": "data", "mountPath": "/x", "readOnly": False}),
])
def test_named_volumes(entry, expected):
    assert spec_of(service(volumes=[entry]))["volumes"] == [expected]


def test_top_level_volume_forms():
    doc = service(volumes=["a:/a", "b:/b", "c:/c", "d_d:/d"])
    doc["volumes"] = {"a": None, "b": {"driver": "local"}, "c": {"external": True, "name": "shared"},
                      "d_d": {}}
    result = convert_compose(doc, PROJECT)
    assert [v["name"] for v in result.items[0]["spec"]["volumes"]] == ["a", "b", "shared", "d-d"]
    messages = {w.path: w.message for w in result.warnings}
    assert "must already exist in the project" in messages["volumes.c.external"]
    assert "'d-d'" in messages["volumes.d_d"]


@pytest.mark.parametrize("volumes, path, fragment", [
    ({"data": {"driver": "rexray/ebs"}}, "volumes.data.driver", "not supported"),
    ({"data": {"driver_opts": {"type": "nfs"}}}, "volumes.data.driver_opts", "not supported"),
    ({"data": {"external": True, "name": "Old_Data"}}, "volumes.data", "external volume 'Old_Data'"),
    ({"data": {"size": "1Gi"}}, "volumes.data.size", "unknown key"),
    ({"data": "oops"}, "volumes.data", "must be a mapping"),
    (["data"], "volumes", "must be a mapping"),
])
def test_top_level_volume_errors(volumes, path, fragment):
    doc = service()
    doc["volumes"] = volumes
    issues = issues_of(doc)
    assert any(i.path == path and fragment in i.message for i in issues), issues


@pytest.mark.parametrize("entry, fragment", [
    ("/data", "anonymous volume at /data"),
    ({"type": "volume", "target": "/data"}, "anonymous volume at /data"),
    ("undeclared:/x", "'undeclared' is not declared"),
    ("data:relative", "absolute path"),
    ("data:/x:rx", "unknown volume option 'rx'"),
    ({"type": "npipe", "source": "x", "target": "/x"}, "not supported"),
    ({"source": "data", "target": "/x"}, "type: volume"),
])
def test_volume_errors(entry, fragment):
    issues = issues_of(service(volumes=[entry]))
    assert any(i.path.startswith("services.web.volumes[0]") and fragment in i.message for i in issues), issues


def test_anonymous_volume_suggests_a_named_one():
    (issue,) = issues_of(service(volumes=["/var/lib/mysql"]))
    assert "'mysql:/var/lib/mysql'" in issue.message and "top-level volumes" in issue.message


def test_long_tmpfs_mount_is_warned_and_skipped():
    result = convert_compose(service(volumes=[{"type": "tmpfs", "target": "/run"}]), PROJECT)
    assert "volumes" not in result.items[0]["spec"]
    (warning,) = result.warnings
    assert warning.path == "services.web.volumes[0]" and "tmpfs" in warning.message


# ---------------------------------------------------------------------------------------------
# Healthcheck
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("test, command", [
    (["CMD", "curl", "-f", "http://localhost"], ["curl", "-f", "http://localhost"]),
    (["CMD-SHELL", "curl -f http://localhost || exit 1"],
     ["/bin/sh", "-c", "curl -f http://localhost || exit 1"]),
    ("curl -f http://localhost", ["/bin/sh", "-c", "curl -f http://localhost"]),
])
def test_healthcheck_test_forms(test, command):
    spec = spec_of(service(healthcheck={"test": test, "interval": "1m30s", "timeout": "10s",
                                        "retries": 4, "start_period": "40s"}))
    assert spec["healthcheck"] == {"exec": {"command": command}, "interval": "1m30s", "timeout": "10s",
                                   "retries": 4, "startPeriod": "40s"}


@pytest.mark.parametrize("healthcheck", [
    {"test": ["NONE"]},
    {"disable": True},
    {"test": ["CMD", "true"], "disable": True},
])
def test_healthcheck_disabled(healthcheck):
    assert "healthcheck" not in spec_of(service(healthcheck=healthcheck))


def test_healthcheck_without_test_is_warned():
    result = convert_compose(service(healthcheck={"interval": "5s"}), PROJECT)
    assert "healthcheck" not in result.items[0]["spec"]
    assert result.warnings[0].path == "services.web.healthcheck"


@pytest.mark.parametrize("healthcheck, path, fragment", [
    ({"test": ["curl", "x"]}, "services.web.healthcheck.test", "CMD"),
    ({"test": []}, "services.web.healthcheck.test", "must not be empty"),
    ({"test": "true", "interval": "soon"}, "services.web.healthcheck.interval", "not a duration"),
    ({"test": "true", "retries": 0}, "services.web.healthcheck.retries", "at least 1"),
    ({"test": "true", "when": "always"}, "services.web.healthcheck.when", "unknown key"),
    ({"test": "true", "interval": "500ms"}, "services.web", "interval must be at least 1s"),
    ("curl localhost", "services.web.healthcheck", "must be a mapping"),
])
def test_healthcheck_errors(healthcheck, path, fragment):
    issues = issues_of(service(healthcheck=healthcheck))
    assert any(i.path == path and fragment in i.message for i in issues), issues


# ---------------------------------------------------------------------------------------------
# Replicas, resources, restart, strategy
# ---------------------------------------------------------------------------------------------


def test_replicas_from_deploy_or_scale():
    assert spec_of(service(deploy={"replicas": 4}))["replicas"] == 4
    assert spec_of(service(scale=2))["replicas"] == 2
    assert spec_of(service(scale=0))["replicas"] == 0
    (issue,) = issues_of(service(scale=2, deploy={"replicas": 3}))
    assert issue.path == "services.web.scale" and "disagree" in issue.message


@pytest.mark.parametrize("memory, expected", [
    ("512m", "512Mi"), ("512M", "512Mi"), ("512mb", "512Mi"), ("1g", "1Gi"), ("1G", "1Gi"),
    ("1gb", "1Gi"), ("2GiB", "2Gi"), ("1.5g", "1536Mi"), ("64000k", "64000Ki"), (268435456, "256Mi"),
    ("100000000", "100000000"),
])
def test_memory_quantities(memory, expected):
    spec = spec_of(service(deploy={"resources": {"limits": {"memory": memory}}}))
    assert spec["resources"] == {"limits": {"memory": expected}}


@pytest.mark.parametrize("cpus, expected", [
    ("0.5", "0.5"), (0.5, "0.5"), (2, "2"), ("1.25", "1.25"), (0.25, "0.25"), ("500m", "500m"),
])
def test_cpu_quantities(cpus, expected):
    spec = spec_of(service(deploy={"resources": {"limits": {"cpus": cpus}}}))
    assert spec["resources"] == {"limits": {"cpu": expected}}


def test_zero_limits_mean_unlimited():
    assert "resources" not in spec_of(service(deploy={"resources": {"limits": {"cpus": "0", "memory": 0}}}))


def test_legacy_resource_keys():
    spec = spec_of(service(cpus=1.5, mem_limit="1g", mem_reservation="512m"))
    assert spec["resources"] == {"limits": {"cpu": "1.5", "memory": "1Gi"}, "requests": {"memory": "512Mi"}}
    same = spec_of(service(mem_limit="1g", deploy={"resources": {"limits": {"memory": "1024m"}}}))
    assert same["resources"] == {"limits": {"memory": "1Gi"}}
    (issue,) = issues_of(service(mem_limit="1g", deploy={"resources": {"limits": {"memory": "2g"}}}))
    assert issue.path == "services.web.mem_limit" and "disagrees" in issue.message


@pytest.mark.parametrize("resources, path, fragment", [
    ({"limits": {"memory": "lots"}}, "services.web.deploy.resources.limits.memory", "not a memory amount"),
    ({"limits": {"cpus": "half"}}, "services.web.deploy.resources.limits.cpus", "not a CPU quantity"),
    ({"limits": {"memory": "1m"}}, "services.web", "at least 6Mi"),
    ({"limits": {"memory": "128m"}, "reservations": {"memory": "256m"}}, "services.web", "must not exceed"),
    ({"reservations": {"devices": [{"capabilities": ["gpu"]}]}},
     "services.web.deploy.resources.reservations.devices", "GPUs"),
    ({"limits": {"gpus": 1}}, "services.web.deploy.resources.limits.gpus", "unknown key"),
])
def test_resource_errors(resources, path, fragment):
    issues = issues_of(service(deploy={"resources": resources}))
    assert any(i.path == path and fragment in i.message for i in issues), issues


@pytest.mark.parametrize("restart, expected, warned", [
    ("no", "never", False),
    (False, "never", False),            # YAML 1.1 reads an unquoted no as false
    ("always", "always", False),
    ("on-failure", "on-failure", False),
    ("on-failure:3", "on-failure", True),
    ("unless-stopped", "always", True),
])
def test_restart(restart, expected, warned):
    result = convert_compose(service(restart=restart), PROJECT)
    assert result.items[0]["spec"]["restartPolicy"] == expected
    assert bool(result.warnings) is warned
    assert all(w.path == "services.web.restart" for w in result.warnings)


@pytest.mark.parametrize("condition, expected", [("none", "never"), ("on-failure", "on-failure"),
                                                 ("any", "always"), (None, "always")])
def test_deploy_restart_policy(condition, expected):
    policy = {"condition": condition} if condition else {"delay": "5s"}
    assert spec_of(service(deploy={"restart_policy": policy}))["restartPolicy"] == expected


@pytest.mark.parametrize("restart", ["sometimes", "always:3", "on-failure:many"])
def test_unknown_restart_policy(restart):
    (issue,) = issues_of(service(restart=restart))
    assert issue.path == "services.web.restart" and f"'{restart}'" in issue.message


def test_deploy_restart_policy_wins_over_restart_with_a_warning():
    doc = service(restart="always", deploy={"restart_policy": {"condition": "none"}})
    result = convert_compose(doc, PROJECT)
    assert result.items[0]["spec"]["restartPolicy"] == "never"
    assert [w.path for w in result.warnings] == ["services.web.restart"]


def test_no_restart_key_keeps_dockyard_default():
    assert "restartPolicy" not in spec_of(service())


@pytest.mark.parametrize("update, expected", [
    ({"parallelism": 2, "order": "start-first"}, {"maxSurge": 2, "maxUnavailable": 0}),
    ({"parallelism": 2, "order": "stop-first"}, {"maxSurge": 0, "maxUnavailable": 2}),
    ({"parallelism": 3}, {"maxSurge": 0, "maxUnavailable": 3}),
    ({"order": "start-first"}, {"maxSurge": 1, "maxUnavailable": 0}),
    ({"parallelism": 0, "order": "start-first"}, {"maxSurge": "100%", "maxUnavailable": 0}),
])
def test_update_config_strategy(update, expected):
    spec = spec_of(service(deploy={"replicas": 4, "update_config": update}))
    assert spec["strategy"] == expected


def test_update_config_bad_order():
    (issue,) = issues_of(service(deploy={"update_config": {"order": "sideways"}}))
    assert issue.path == "services.web.deploy.update_config.order"


# ---------------------------------------------------------------------------------------------
# Labels, user, working_dir, runtime
# ---------------------------------------------------------------------------------------------


def test_labels_list_and_mapping():
    assert spec_of(service(labels=["a=1", "b", "c=x=y"]))["labels"] == {"a": "1", "b": "", "c": "x=y"}
    labels = spec_of(service(labels={"a": 1, "b": None, "c": True}))["labels"]
    assert labels == {"a": "1", "b": "", "c": "true"}


@pytest.mark.parametrize("labels, path", [
    (["dockyard.app=x"], "services.web.labels[0]"),
    ({"com.docker.compose.project": "x"}, "services.web.labels.com.docker.compose.project"),
])
def test_reserved_labels_are_refused(labels, path):
    (issue,) = issues_of(service(labels=labels))
    assert issue.path == path and "reserved" in issue.message


def test_user_working_dir_runtime():
    spec = spec_of(service(user=1000, working_dir="/app", runtime="crun"))
    assert (spec["user"], spec["workingDir"], spec["runtime"]) == ("1000", "/app", "crun")


# ---------------------------------------------------------------------------------------------
# Service names, depends_on and start order
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, why, suggestion", [
    ("my_app", "contains '_'", "'my-app'"),
    ("WebApp", "upper-case", "'webapp'"),
    ("-web", "starts or ends with '-'", "'web'"),
    ("a" * 64, "longer than 63", "'" + "a" * 63 + "'"),
    ("web.1", "lower-case letters, digits and '-'", "'web-1'"),
])
def test_invalid_service_name(name, why, suggestion):
    doc = {"services": {name: {"image": "nginx"}}}
    (issue,) = issues_of(doc)
    assert issue.path == f"services.{name}"
    assert f"'{name}'" in issue.message and why in issue.message and suggestion in issue.message


def test_depends_on_forms():
    result = convert_yaml("""
        services:
          web:
            image: nginx
            depends_on:
              api: {condition: service_healthy, restart: true}
              migrate: {condition: service_completed_successfully}
          api:
            image: nginx
            depends_on: [db]
          migrate:
            image: nginx
            depends_on:
              db:
          db:
            image: postgres
    """)
    assert [i["metadata"]["name"] for i in result.items] == ["db", "api", "migrate", "web"]
    assert by_name(result)["web"]["spec"]["dependsOn"] == ["api", "migrate"]


def test_file_order_is_kept_when_there_are_no_dependencies():
    doc = {"services": {n: {"image": "nginx"} for n in ("zeta", "alpha", "mid")}}
    assert [i["metadata"]["name"] for i in convert_compose(doc, PROJECT).items] == ["zeta", "alpha", "mid"]


def test_dependency_cycle_is_an_error_naming_the_services():
    issues = issues_of({"services": {
        "a": {"image": "nginx", "depends_on": ["b"]},
        "b": {"image": "nginx", "depends_on": ["a"]},
        "c": {"image": "nginx", "depends_on": ["a"]},
        "d": {"image": "nginx", "depends_on": ["d"]},
    }})
    assert len(issues) == 2
    assert issues[0].path == "services.a.depends_on"
    assert issues[0].message == ("depends_on forms a cycle (a -> b -> a): services a, b cannot be started "
                                 "in any order")  # c only waits on the cycle: it is not named
    assert issues[1].path == "services.d.depends_on" and "d -> d" in issues[1].message


def test_unknown_dependency():
    (issue,) = issues_of(service(depends_on=["cache"]))
    assert issue.path == "services.web.depends_on.cache" and "'cache'" in issue.message
    doc = service(depends_on={"cache": {"condition": "service_started", "required": False}})
    result = convert_compose(doc, PROJECT)
    assert "dependsOn" not in result.items[0]["spec"]
    assert result.warnings[0].path == "services.web.depends_on.cache"


def test_unknown_depends_on_condition():
    doc = {"services": {"web": {"image": "nginx", "depends_on": {"db": {"condition": "service_ready"}}},
                        "db": {"image": "postgres"}}}
    (issue,) = issues_of(doc)
    assert issue.path == "services.web.depends_on.db.condition"


# ---------------------------------------------------------------------------------------------
# Refused keys
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keys, key_path, fragment", [
    ({"build": "."}, "build", "build: is not supported in Compose import; build the image with a Dockyard "
                              "Build and reference it by image"),
    ({"build": {"context": "."}, "image": None}, "build", "Dockyard Build"),
    ({"extends": {"service": "base"}}, "extends", "extends: is not supported"),
    ({"secrets": ["db_password"]}, "secrets", "secrets: is not supported yet"),
    ({"configs": ["nginx_conf"]}, "configs", "configs: is not supported yet"),
    ({"volumes_from": ["db"]}, "volumes_from", "volumes_from: is not supported"),
    ({"network_mode": "bridge"}, "network_mode", "network_mode: bridge is not supported"),
    ({"network_mode": "service:db"}, "network_mode", "network_mode: service:db is not supported"),
    ({"ipc": "shareable"}, "ipc", "ipc: shareable is not supported"),
    ({"ipc": "service:db"}, "ipc", "ipc: service:db is not supported"),
    ({"pid": "service:db"}, "pid", "pid: service:db is not supported"),
    ({"deploy": {"mode": "global"}}, "deploy.mode", "deploy.mode global is not supported"),
    ({"dns": ["8.8.8.8"]}, "dns", "dns: is not supported"),
    ({"dns_search": ["example.com"]}, "dns_search", "dns_search: is not supported"),
    ({"extra_hosts": ["host.docker.internal:host-gateway"]}, "extra_hosts", "extra_hosts: is not supported"),
    ({"cap_drop": ["ALL"]}, "cap_drop", "cap_drop: is not supported"),
    ({"external_links": ["redis_1"]}, "external_links", "external_links: is not supported"),
    ({"security_opt": ["label:type:svirt_apache_t"]}, "security_opt[0]", "not supported"),
    ({"colour": "blue"}, "colour", "unknown key 'colour'"),
    ({"deploy": {"replica": 2}}, "deploy.replica", "unknown key 'replica'"),
])
def test_refused_keys_name_the_key_and_the_service(keys, key_path, fragment):
    doc = service(**keys)
    doc["services"]["web"] = {k: v for k, v in doc["services"]["web"].items() if v is not None}
    issues = issues_of(doc)
    matching = [i for i in issues if i.path == f"services.web.{key_path}"]
    assert matching, issues
    assert fragment in matching[0].message
    assert not matching[0].message.startswith(FORBIDDEN)
    assert f"services.web.{key_path}" in str(ComposeError(issues))


@pytest.mark.parametrize("keys, key_path, fragment", [
    ({"privileged": True}, "privileged", "privileged: true"),
    ({"network_mode": "host"}, "network_mode", "network_mode: host"),
    ({"pid": "host"}, "pid", "pid: host"),
    ({"ipc": "host"}, "ipc", "ipc: host"),
    ({"uts": "host"}, "uts", "uts: host"),
    ({"userns_mode": "host"}, "userns_mode", "userns_mode: host"),
    ({"cap_add": ["NET_ADMIN"]}, "cap_add", "cap_add"),
    ({"devices": ["/dev/fuse:/dev/fuse"]}, "devices", "devices"),
    ({"sysctls": {"net.core.somaxconn": 1024}}, "sysctls", "sysctls"),
    ({"cgroup_parent": "m-executor-abcd"}, "cgroup_parent", "cgroup_parent"),
    ({"security_opt": ["seccomp:unconfined"]}, "security_opt[0]", "seccomp:unconfined"),
    ({"security_opt": ["apparmor=unconfined"]}, "security_opt[0]", "apparmor=unconfined"),
    ({"volumes": ["./html:/usr/share/nginx/html"]}, "volumes[0]", "host bind mount './html'"),
    ({"volumes": ["/srv/www:/var/www:ro"]}, "volumes[0]", "host bind mount '/srv/www'"),
    ({"volumes": ["~/.ssh:/root/.ssh"]}, "volumes[0]", "host bind mount '~/.ssh'"),
    ({"volumes": [{"type": "bind", "source": "/etc", "target": "/host-etc"}]}, "volumes[0]",
     "host bind mount '/etc'"),
    ({"volumes": ["/var/run/docker.sock:/var/run/docker.sock"]}, "volumes[0]", "always refused"),
    ({"volumes": [{"type": "bind", "source": "/run/docker.sock", "target": "/var/run/docker.sock"}]},
     "volumes[0]", "Docker socket"),
    ({"use_api_socket": True}, "use_api_socket", "always refused"),
])
def test_security_policy_refusals(keys, key_path, fragment):
    issues = issues_of(service(**keys))
    (issue,) = [i for i in issues if i.path == f"services.web.{key_path}"]
    assert issue.message.startswith("forbidden by the project's security policy (baseline): ")
    assert fragment in issue.message


@pytest.mark.parametrize("keys", [
    {"privileged": False}, {"cap_add": []}, {"devices": []}, {"sysctls": {}}, {"ipc": "private"},
    {"cgroup": "private"},
])
def test_harmless_values_of_policed_keys_pass(keys):
    result = convert_compose(service(**keys), PROJECT)
    assert result.warnings == [] and len(result.items) == 1


# ---------------------------------------------------------------------------------------------
# Accepted with a warning
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key, value, fragment", [
    ("container_name", "my-web", "managed by Dockyard"),
    ("hostname", "web01", "service name"),
    ("domainname", "example.com", "service name"),
    ("stop_signal", "SIGINT", "stop signal"),
    ("stop_grace_period", "1m", "grace period"),
    ("platform", "linux/amd64", "platform"),
    ("pull_policy", "always", "pull"),
    ("init", True, "PID 1"),
    ("tty", True, "terminal"),
    ("stdin_open", True, "standard input"),
    ("logging", {"driver": "json-file"}, "logging drivers"),
    ("mac_address", "02:42:ac:11:65:43", "network"),
    ("profiles", ["debug"], "profiles"),
    ("links", ["db:database"], "service name"),
    ("ulimits", {"nofile": {"soft": 20000, "hard": 40000}}, "ulimits"),
    ("shm_size", "256m", "/dev/shm"),
    ("tmpfs", ["/run", "/tmp"], "writable layer"),
    ("read_only", True, "not applied yet"),
    ("cpu_shares", 512, "cpu and memory"),
    ("pids_limit", 100, "cpu and memory"),
])
def test_ignored_keys_warn_saying_how_they_are_treated(key, value, fragment):
    result = convert_compose(service(**{key: value}), PROJECT)
    (warning,) = result.warnings
    assert warning.path == f"services.web.{key}"
    assert warning.message.startswith(f"{key} is ignored: ") and fragment in warning.message
    assert len(result.items) == 1


@pytest.mark.parametrize("deploy, path", [
    ({"placement": {"constraints": ["node.role == manager"]}}, "deploy.placement"),
    ({"endpoint_mode": "dnsrr"}, "deploy.endpoint_mode"),
    ({"rollback_config": {"parallelism": 1}}, "deploy.rollback_config"),
    ({"labels": {"com.example": "x"}}, "deploy.labels"),
    ({"resources": {"limits": {"pids": 100}}}, "deploy.resources.limits.pids"),
    ({"restart_policy": {"condition": "any", "window": "120s"}}, "deploy.restart_policy.window"),
])
def test_ignored_deploy_keys_warn(deploy, path):
    (warning,) = warnings_of(service(deploy=deploy))
    assert warning.path == f"services.web.{path}"
    assert path.split(".")[-1] in warning.message


def test_deploy_mode_replicated_is_accepted_silently():
    assert warnings_of(service(deploy={"mode": "replicated", "replicas": 2})) == []


def test_no_new_privileges_is_accepted_with_a_warning():
    (warning,) = warnings_of(service(security_opt=["no-new-privileges:true"]))
    assert warning.path == "services.web.security_opt[0]" and "always on" in warning.message


def test_disabled_bool_keys_say_nothing():
    assert warnings_of(service(init=False, tty=False, read_only=False, stdin_open=False)) == []


def test_networks_give_one_warning_per_file():
    result = convert_yaml("""
        services:
          web:
            image: nginx
            networks: [front, back]
          api:
            image: nginx
            networks:
              back:
                aliases: [backend]
                ipv4_address: 172.16.238.10
        networks:
          front: {}
          back:
            driver: bridge
            labels: {com.example: x}
    """)
    (warning,) = result.warnings
    assert warning.path == "networks"
    assert "all apps of a project share the project's network" in warning.message
    assert "reach each other by service name" in warning.message
    assert "spec" in result.items[0] and "networks" not in result.items[0]["spec"]


def test_service_networks_alone_also_warn_once():
    doc = {"services": {name: {"image": "nginx", "networks": ["n"]} for name in ("a", "b")}}
    (warning,) = warnings_of(doc)
    assert warning.path == "services.a.networks"


# ---------------------------------------------------------------------------------------------
# Shapes and collecting every issue
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("doc, path, fragment", [
    ({"services": ["web"]}, "services", "must be a mapping"),
    ({"services": {}}, "services", "defines no services"),
    ({"version": "3"}, "services", "is required"),
    ({"services": {"web": None}}, "services.web", "must be a mapping"),
    ({"services": {"web": ["nginx"]}}, "services.web", "must be a mapping"),
    ({"services": {"web": {"image": "nginx", "deploy": "fast"}}}, "services.web.deploy", "must be a mapping"),
    ({"services": {"web": {"image": "nginx", "deploy": {"resources": ["x"]}}}},
     "services.web.deploy.resources", "must be a mapping"),
    ({"services": {"web": {"image": "nginx", "environment": "A=1"}}}, "services.web.environment",
     "must be a list"),
    ({"services": {"web": {"image": "nginx", "ports": "80:80"}}}, "services.web.ports", "must be a list"),
    ({"services": {"web": {"image": "nginx", "networks": "front"}}}, "services.web.networks",
     "list or a mapping"),
    ({"services": {"web": {"image": "nginx"}}, "networks": ["front"]}, "networks", "must be a mapping"),
    ({"services": {"web": {"image": "nginx"}}, "include": ["other.yaml"]}, "include", "not supported"),
    ({"services": {"web": {"image": "nginx"}}, "secrets": {"s": {"file": "s.txt"}}}, "secrets",
     "not supported"),
    ({"services": {"web": {"image": "nginx"}}, "service": {}}, "service", "unknown key"),
])
def test_shape_errors_have_paths(doc, path, fragment):
    issues = issues_of(doc)
    assert any(i.path == path and fragment in i.message for i in issues), issues


def test_not_a_mapping_at_all():
    with pytest.raises(ComposeError, match="must be a mapping"):
        convert_compose(["services"], PROJECT)  # type: ignore[arg-type]


def test_several_problems_are_all_reported():
    issues = issues_of(yaml.safe_load(textwrap.dedent("""
        services:
          web_app:
            build: .
            privileged: true
            ports: ["8080:80", "http"]
            volumes: ["./src:/app", "/cache"]
            depends_on: [ghost]
            restart: sometimes
            frobnicate: 1
          worker:
            image: acme/worker
            cap_add: [SYS_ADMIN]
            env_file: worker.env
            environment:
              TOKEN: ${TOKEN:?TOKEN is required}
            deploy:
              mode: global
              resources:
                limits: {memory: 2g}
                reservations: {memory: 4g}
        volumes:
          data:
            driver: nfs
    """)))
    paths = [i.path for i in issues]
    assert paths == [
        "services.worker.environment.TOKEN",
        "volumes.data.driver",
        "services.web_app.depends_on.ghost",
        "services.web_app",
        "services.web_app.privileged",
        "services.web_app.frobnicate",
        "services.web_app.build",
        "services.web_app.ports[1]",
        "services.web_app.restart",
        "services.web_app.volumes[0]",
        "services.web_app.volumes[1]",
        "services.worker.cap_add",
        "services.worker.deploy.mode",
        "services.worker.env_file",
    ]
