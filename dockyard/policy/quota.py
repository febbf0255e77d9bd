"""Quota arithmetic: what a set of Apps uses, and whether a change fits in what is left."""

from __future__ import annotations

from dataclasses import dataclass, field

from dockyard.model.app import AppSpec
from dockyard.model.quantity import approx_memory, format_memory, parse_cpu, parse_memory
from dockyard.model.quota import Quota

RESOURCES = ("cpu", "memory", "replicas", "apps", "volumes", "storage")


@dataclass
class Usage:
    cpu: float = 0.0
    memory: int = 0
    replicas: int = 0
    apps: int = 0
    volumes: set[str] = field(default_factory=set)
    storage: int = 0

    def add(self, spec: AppSpec) -> None:
        n = spec.replicas
        self.cpu += n * (spec.resources.limit_cpu() or 0.0)
        self.memory += n * (spec.resources.limit_memory() or 0)
        self.replicas += n
        self.apps += 1
        self.volumes.update(v.name for v in spec.volumes if not v.host_path)

    def as_dict(self) -> dict[str, object]:
        return {"cpu": _fmt_cpu(self.cpu), "memory": format_memory(self.memory), "replicas": self.replicas,
                "apps": self.apps, "volumes": len(self.volumes), "storage": format_memory(self.storage)}

    def amount(self, resource: str) -> float:
        v = getattr(self, resource)
        return float(len(v)) if isinstance(v, set) else float(v)


def hard_amount(q: Quota, resource: str) -> float | None:
    v = getattr(q, resource)
    if v is None:
        return None
    if resource == "cpu":
        return parse_cpu(v)
    if resource in ("memory", "storage"):
        return float(parse_memory(v))
    return float(v)


def _fmt_cpu(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".") or "0"


def _fmt_storage(n: int) -> str:
    """Registry bytes are rarely whole units: 1105173 → "1.1Mi" (one decimal, rounded), while an
    exact amount keeps the form it is written in ("1Mi", "512Ki"), as `hard` shows it. Both parse
    as quantities again (parse_memory, the dashboard's amount())."""
    exact = format_memory(n)
    return exact if exact != str(n) or n < 1024 else approx_memory(n)


def show(resource: str, v: float) -> str:
    if resource == "cpu":
        return _fmt_cpu(v)
    if resource == "storage":
        return _fmt_storage(int(v))
    if resource == "memory":
        return format_memory(int(v))
    return str(int(v))


def exceeded(q: Quota, before: Usage, after: Usage, where: str) -> str | None:
    """A message for the first resource that `after` puts over `q` (only growth is refused)."""
    for r in RESOURCES:
        hard = hard_amount(q, r)
        if hard is None:
            continue
        new, old = after.amount(r), before.amount(r)
        if new > hard and new > old:
            requested = new - old
            remaining = max(hard - old, 0)
            return (f"quota exceeded in {where}: {r}: this change requests {show(r, requested)}, "
                    f"{show(r, remaining)} of {show(r, hard)} remaining")
    return None
