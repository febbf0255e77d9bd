"""Alert routes beyond the declarative kinds: send a test message through a Notifier and report
what its destination answered (users set up a webhook or SMTP server and want to know it works)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from dockyard.alerts.evaluator import notifier_target, public_url
from dockyard.alerts.notifiers import DeliveryError, Notification, deliver
from dockyard.alerts.state import iso
from dockyard.api.authz import AuthzDep
from dockyard.api.deps import StoreDep
from dockyard.api.problems import Problem
from dockyard.store.repository import Store

router = APIRouter(prefix="/projects/{tenant}/{project}", tags=["notifiers"])


def _send_test(store: Store, scope: str, name: str, base: str) -> dict:
    obj = store.get("Notifier", scope, name)
    try:
        target = notifier_target(store, obj)
    except ValidationError as e:
        raise Problem(409, f"notifier '{scope}/{name}' is not valid any more: {e}") from None
    n = Notification(rule="dockyard-test", project=scope, app=None, state="firing", subject="test", value=None,
                     threshold=None, op=None, unit="", starts_at=iso(time.time()), ends_at=None,
                     url=f"{base.rstrip('/')}/#/projects/{scope}", test=True,
                     summary=f"Test message from Dockyard for notifier {name} of project {scope}")
    try:
        answer = deliver(target, n)
    except DeliveryError as e:
        raise Problem(502, f"the {target.spec.type} notifier '{name}' could not deliver: {e}",
                      title="Notification failed") from None
    return {"notifier": name, "type": target.spec.type, "delivered": True, "answer": answer}


@router.post("/notifiers/{name}/test", operation_id="testNotifier",
             summary="Send a test message through a notifier and report the destination's answer")
async def test_notifier(request: Request, store: StoreDep, authz: AuthzDep, tenant: str, project: str,
                        name: str) -> dict:
    scope = f"{tenant}/{project}"
    authz.require("integrations.manage", tenant=tenant, project=project, missing=f"notifier '{scope}/{name}' not found")
    return await run_in_threadpool(_send_test, store, scope, name, public_url(str(request.base_url)))
