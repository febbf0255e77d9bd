"""Tenant isolation on the real engine: traffic between real containers, container hardening
read back with `docker inspect`, and secrets as tmpfs files."""

from __future__ import annotations

import base64
import http.server
import os
import threading

import pytest
from dockyard_harness import app_containers, app_manifest, get_app

pytestmark = pytest.mark.engine


def _project(s, tenant: str, project: str, **spec) -> None:  # noqa: ANN001, ANN003
    with s.client() as c:
        if c.get(f"/tenants/{tenant}").status_code == 404:
            c.post("/tenants", json={"kind": "Tenant", "metadata": {"name": tenant}}).raise_for_status()
        c.post("/projects", json={"kind": "Project", "metadata": {"name": project, "tenant": tenant},
                                  "spec": spec}).raise_for_status()


def _ready(s, name: str, project: str, n: int = 1) -> dict | None:  # noqa: ANN001
    app = get_app(s, name, project)
    st = app.get("status") or {}
    return app if st.get("phase") == "Ready" and st.get("readyReplicas") == n else None


def _sh(docker_api, cid: str, cmd: str) -> tuple[int, str]:  # noqa: ANN001
    ex = docker_api.exec_create(cid, ["sh", "-c", cmd])
    out = docker_api.exec_start(ex["Id"]).decode()
    return docker_api.exec_inspect(ex["Id"])["ExitCode"], out


@pytest.mark.skipif(os.geteuid() != 0, reason="host isolation rules need root")
def test_projects_cannot_reach_each_other_nor_the_host(server, docker_api) -> None:  # noqa: ANN001
    _project(server, "alpha", "shop")
    _project(server, "beta", "shop")
    with server.client() as c:
        for p in ("alpha/shop", "beta/shop"):
            c.post(f"/projects/{p}/apps", json=app_manifest("web", project=p, health=False)).raise_for_status()
        c.post("/projects/alpha/shop/apps", json=app_manifest("api", project="alpha/shop", health=False)
               ).raise_for_status()
    a = server.wait_for(lambda: _ready(server, "web", "alpha/shop"), what="alpha web")
    b = server.wait_for(lambda: _ready(server, "web", "beta/shop"), what="beta web")
    server.wait_for(lambda: _ready(server, "api", "alpha/shop"), what="alpha api")
    a_id = next(x["Id"] for x in app_containers(docker_api, server.instance, "web")
                if x["Labels"]["dockyard.tenant"] == "alpha")
    b_ip = b["status"]["containers"][0]["ip"]

    # a host service listening on all addresses, as the engine's API or a database might
    httpd = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.SimpleHTTPRequestHandler)
    port = httpd.server_address[1]
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        gateways = set()
        for net in docker_api.networks(filters={"label": f"dockyard.instance={server.instance}"}):
            for cfg in docker_api.inspect_network(net["Id"])["IPAM"]["Config"]:
                gateways.add(cfg["Gateway"])
        assert len(gateways) == 2
        # the control: the same request from the host works
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=3).status_code == 200
        for gw in gateways:
            code, out = _sh(docker_api, a_id, f"timeout 4 wget -q -O- http://{gw}:{port}/")
            assert code != 0, f"a container reached the host at {gw}:{port}: {out[:100]}"
        code, _ = _sh(docker_api, a_id, f"timeout 4 wget -q -O- http://{b_ip}:8080/")
        assert code != 0, "a container of alpha reached beta's container"
        code, out = _sh(docker_api, a_id, "timeout 4 wget -q -O- http://api:8080/")
        assert code == 0 and out.startswith("demo 1.0"), "apps of one project still reach each other"
        # and the host still reaches the containers (replies pass)
        assert httpx.get(f"http://{a['status']['containers'][0]['ip']}:8080/", timeout=3).status_code == 200
    finally:
        httpd.shutdown()


def test_every_container_is_hardened_and_restricted_projects_more(server, docker_api) -> None:  # noqa: ANN001
    _project(server, "acme", "shop", defaults={"memory": "64Mi", "cpu": "0.5", "pids": 200})
    _project(server, "acme", "vault", securityPolicy="restricted")
    with server.client() as c:
        c.post("/projects/acme/shop/apps", json=app_manifest("web", project="acme/shop", health=False)
               ).raise_for_status()
        body = app_manifest("job", project="acme/vault", health=False, user="1000:1000",
                            securityContext={"readOnlyRootFilesystem": True}, command=["sleep"], args=["3600"])
        body["spec"]["ports"] = []
        c.post("/projects/acme/vault/apps", json=body).raise_for_status()
    server.wait_for(lambda: _ready(server, "web", "acme/shop"), what="web")
    server.wait_for(lambda: _ready(server, "job", "acme/vault"), what="job")
    found = docker_api.containers(all=True, filters={"label": f"dockyard.instance={server.instance}"})
    assert len(found) == 2
    for x in found:
        hc = docker_api.inspect_container(x["Id"])["HostConfig"]
        assert hc["Memory"] > 0 and hc["NanoCpus"] > 0 and hc["PidsLimit"] > 0
        assert "no-new-privileges" in hc["SecurityOpt"]
        assert not hc["Privileged"] and hc["NetworkMode"] != "host" and hc["PidMode"] != "host"
        assert not [m for m in docker_api.inspect_container(x["Id"])["Mounts"] if m["Type"] == "bind"]
        if x["Labels"]["dockyard.project"] == "shop":
            assert hc["Memory"] == 64 * 1024 * 1024 and hc["PidsLimit"] == 200 and hc["NanoCpus"] == 500_000_000
        else:
            cfg = docker_api.inspect_container(x["Id"])["Config"]
            assert hc["CapDrop"] == ["ALL"] and hc["ReadonlyRootfs"] and cfg["User"] == "1000:1000"


def test_secrets_are_tmpfs_files_never_env_labels_or_api_values(server, docker_api) -> None:  # noqa: ANN001
    _project(server, "acme", "shop")
    value = "s3cr3t-value-" + os.urandom(4).hex()
    with server.client() as c:
        r = c.post("/projects/acme/shop/secrets", json={"kind": "Secret", "metadata": {"name": "db-password"},
                                                        "spec": {"value": value}})
        assert r.status_code == 201 and value not in r.text
        assert "ciphertext" not in r.text and r.json()["spec"]["size"] == len(value)
        c.post("/projects/acme/shop/configs", json={"kind": "Config", "metadata": {"name": "app-conf"},
                                                    "spec": {"data": "mode=fast\n"}}).raise_for_status()
        body = app_manifest("web", health=False, secrets=[{"name": "db-password"}], configs=[{"name": "app-conf"}])
        c.post("/projects/acme/shop/apps", json=body).raise_for_status()
        assert value not in c.get("/projects/acme/shop/secrets/db-password").text
        assert value not in c.get("/projects/acme/shop/secrets?watch=0").text
    server.wait_for(lambda: _ready(server, "web", "acme/shop"), what="web with secret")
    cid = app_containers(docker_api, server.instance, "web")[0]["Id"]
    code, out = _sh(docker_api, cid, "cat /run/secrets/db-password; echo; cat /run/configs/app-conf")
    assert code == 0 and out.startswith(value) and "mode=fast" in out
    info = docker_api.inspect_container(cid)
    assert value not in str(info["Config"]["Env"]) and value not in str(info["Config"]["Labels"])
    assert value not in str(info)
    code, out = _sh(docker_api, cid, "grep ' /run/secrets/db-password ' /proc/mounts")
    assert "tmpfs" in out, f"the secret is not on a tmpfs: {out}"
    # the database holds only ciphertext
    db = (server.data_dir / "dockyard.db").read_bytes()
    assert value.encode() not in db and base64.b64encode(value.encode()) not in db

    # a new value rolls the app out with it
    new_value = value + "-2"
    with server.client() as c:
        cur = c.get("/projects/acme/shop/secrets/db-password").json()
        c.put("/projects/acme/shop/secrets/db-password", json={
            "kind": "Secret", "metadata": {"name": "db-password", "resourceVersion": cur["metadata"]["resourceVersion"]},
            "spec": {"value": new_value}}).raise_for_status()

    def rolled() -> bool:
        ids = app_containers(docker_api, server.instance, "web", running_only=True)
        if len(ids) != 1 or ids[0]["Id"] == cid:
            return False
        return _sh(docker_api, ids[0]["Id"], "cat /run/secrets/db-password")[1] == new_value

    server.wait_for(rolled, timeout=30, what="the app to roll out the new secret value")

    # key rotation re-encrypts; the app keeps working and values still decrypt
    with server.client() as c:
        rot = c.post("/admin/secret-key/rotate").json()
        assert rot["reencrypted"] == 1
        c.post("/projects/acme/shop/apps/web/scale", json={"replicas": 2}).raise_for_status()
    server.wait_for(lambda: _ready(server, "web", "acme/shop", 2), what="scaled after rotation")
    for x in app_containers(docker_api, server.instance, "web"):
        assert _sh(docker_api, x["Id"], "cat /run/secrets/db-password")[1] == new_value
