"""A merge patch that changes an App's `spec.image` (the dashboard's settings form sends one)
carried the old `imageDigest` along, and replicas ran the new tag's name at the old tag's digest:
such a patch drops the digest (the controller resolves the new tag), unless it gives one."""

from __future__ import annotations

from typing import Any

from api_checks import V1, ok
from test_api import app_body, make_project

IMAGE = "127.0.0.1:5000/acme/shop/web"
D1, D2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
APP = f"{V1}/projects/acme/shop/apps/web"


def test_a_patch_of_the_image_drops_the_digest_it_would_carry_over(api: Any) -> None:
    make_project(api)
    ok(api.post(f"{V1}/projects/acme/shop/apps", json=app_body(image=f"{IMAGE}:v1", imageDigest=D1)), 201)
    ok(api.patch(APP, json={"spec": {"replicas": 2}}))
    assert api.get(APP).json()["spec"]["imageDigest"] == D1           # not the image: the digest stays
    spec = ok(api.patch(APP, json={"spec": {"image": f"{IMAGE}:v2"}}))["spec"]
    assert spec["image"] == f"{IMAGE}:v2" and "imageDigest" not in spec, spec
    spec = ok(api.patch(APP, json={"spec": {"image": f"{IMAGE}:v3", "imageDigest": D2}}))["spec"]
    assert spec["imageDigest"] == D2                                    # a digest given with it is kept
