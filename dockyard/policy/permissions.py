"""The permission table: one rule per action, as data. `docs/security.md` publishes it.

Roles are bound per tenant or per project and ordered viewer < developer < maintainer < owner.
A tenant role applies to every project of the tenant. Platform admins may do everything.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("viewer", "developer", "maintainer", "owner")
RANK = {r: i for i, r in enumerate(ROLES)}


@dataclass(frozen=True)
class Rule:
    action: str
    level: str      # "project" (project or tenant binding counts), "tenant" (tenant binding), "admin"
    min_role: str   # the least role that may; ignored for admin-level rules
    description: str


RULES: tuple[Rule, ...] = (
    Rule("tenant.read", "tenant", "viewer", "see a tenant (any role in it or one of its projects)"),
    Rule("tenant.update", "tenant", "owner", "change a tenant's display name and description"),
    Rule("tenant.create", "admin", "", "create tenants"),
    Rule("tenant.delete", "admin", "", "delete tenants"),
    Rule("tenant.quota", "admin", "", "set a tenant's or project's quota"),
    Rule("project.read", "project", "viewer", "see a project, its quota usage and members"),
    Rule("project.create", "tenant", "owner", "create projects"),
    Rule("project.update", "project", "maintainer", "change a project's description, defaults and policy"),
    Rule("project.delete", "tenant", "owner", "delete a project and everything in it"),
    Rule("project.privileged", "admin", "", "grant the privileged security policy to a project"),
    Rule("members.manage", "project", "owner", "grant and revoke roles (tenant owners: in the tenant)"),
    Rule("app.read", "project", "viewer", "see apps, their status, events and rollout history"),
    Rule("app.logs", "project", "viewer", "read app logs"),
    Rule("app.write", "project", "developer", "create, change, scale, roll back and delete apps"),
    Rule("app.exec", "project", "developer", "run commands in app containers"),
    Rule("images.pull", "project", "viewer", "pull the project's images from Dockyard's registry"),
    Rule("images.push", "project", "developer", "push images to the project's repositories"),
    Rule("images.delete", "project", "maintainer", "delete the project's images and tags from the registry"),
    Rule("robots.manage", "project", "maintainer",
         "see, create, disable and delete the project's robot accounts (registry logins for CI)"),
    Rule("alerts.read", "project", "viewer", "see alert rules, their state, silences and the events timeline"),
    Rule("alerts.write", "project", "developer", "create, change and delete alert rules and silences"),
    Rule("integrations.manage", "project", "maintainer",
         "see and manage notifiers and log drains (their URLs and settings can hold credentials)"),
    Rule("builds.read", "project", "viewer", "see builds, build configs and build logs"),
    Rule("builds.write", "project", "developer", "create build configs, start and cancel builds"),
    Rule("secret.read", "project", "viewer", "see secret and config names and hashes (never values)"),
    Rule("secret.write", "project", "developer", "create, replace and delete secrets and configs"),
    Rule("audit.read", "tenant", "owner", "read the tenant's audit log (admins: all of it)"),
    Rule("users.manage", "admin", "", "create, list and delete users"),
    Rule("clusters.manage", "admin", "", "manage clusters and engines"),
    Rule("registry.gc", "admin", "", "run the registry's garbage collection on demand"),
)
BY_ACTION = {r.action: r for r in RULES}


def at_least(role: str | None, minimum: str) -> bool:
    return role is not None and RANK[role] >= RANK[minimum]


def strongest(*roles: str | None) -> str | None:
    present = [r for r in roles if r]
    return max(present, key=lambda r: RANK[r]) if present else None


def permission_table_markdown() -> str:
    """The table as `docs/security.md` shows it (a test keeps the document in step)."""
    head = "| action | who | " + " | ".join(ROLES) + " | what it allows |\n"
    head += "| --- | --- | " + " | ".join("---" for _ in ROLES) + " | --- |\n"
    rows = []
    for r in RULES:
        if r.level == "admin":
            marks = ["" for _ in ROLES]
            who = "admin only"
        else:
            marks = ["yes" if RANK[x] >= RANK[r.min_role] else "" for x in ROLES]
            who = f"{r.level} role"
        rows.append(f"| `{r.action}` | {who} | " + " | ".join(marks) + f" | {r.description} |")
    return head + "\n".join(rows) + "\n"
