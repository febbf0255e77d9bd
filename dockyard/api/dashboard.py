"""Routes the web dashboard reads: summary tables of large projects and the overview."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from dockyard.api import summaries
from dockyard.api.authz import AuthzDep
from dockyard.api.deps import PlatformDep, StoreDep

router = APIRouter(tags=["dashboard"])


@router.get("/projects/{tenant}/{project}/appsummaries", operation_id="listAppSummaries",
            summary="One row per app, filtered, sorted and paged on the server",
            description="`total` counts the rows after every filter; `counts` counts each state after the "
                        "name filter and before the state filter. `sort` by age ascending lists the newest "
                        "app first (youngest first, as kubectl's AGE); `state` sorts by severity, "
                        "ready < progressing < degraded < failed. Equal keys are ordered by name.")
def list_app_summaries(
        store: StoreDep, authz: AuthzDep, tenant: str, project: str,
        name: Annotated[str | None, Query(max_length=63, description="names containing this")] = None,
        state: Annotated[summaries.State | None, Query()] = None,
        sort: Annotated[summaries.SortKey, Query()] = "name",
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict:
    return summaries.app_summaries(store, authz, tenant, project, name=name, state=state, sort=sort,
                                   offset=offset, limit=limit)


@router.get("/overview", operation_id="getOverview",
            summary="Engine, leadership and app states and reserved cpu/memory of every project you can see")
def get_overview(store: StoreDep, authz: AuthzDep, platform: PlatformDep) -> dict:
    return summaries.overview(store, authz, platform)
