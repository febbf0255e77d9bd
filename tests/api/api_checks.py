"""Assertions the API tests share: a response has the expected status, and errors are
problem+json with a detail."""

from __future__ import annotations

from typing import Any

V1 = "/api/v1"
PROBLEM = "application/problem+json"


def ok(r: Any, status: int = 200) -> dict:
    assert r.status_code == status, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"
    return r.json()


def problem(r: Any, status: int) -> dict:
    assert r.status_code == status, f"{r.request.method} {r.request.url} -> {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["detail"]
    return body
