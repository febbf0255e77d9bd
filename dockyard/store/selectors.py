"""Label selectors, as kubectl writes them: `app=web,tier!=db,env in (a,b),!legacy,team`."""

from __future__ import annotations

import re
from dataclasses import dataclass

_TERM = re.compile(
    r"^\s*(?:(?P<not>!)\s*(?P<nk>[^\s,=!()]+)"
    r"|(?P<k>[^\s,=!()]+)\s*(?:(?P<op>==|=|!=)\s*(?P<v>[^\s,()=!]*)"
    r"|\s+(?P<setop>in|notin)\s*\((?P<set>[^)]*)\))?)\s*$"
)


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # =, !=, in, notin, exists, !exists
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        has = self.key in labels
        v = labels.get(self.key)
        if self.op == "=":
            return has and v == self.values[0]
        if self.op == "!=":
            return not has or v != self.values[0]
        if self.op == "in":
            return has and v in self.values
        if self.op == "notin":
            return not has or v not in self.values
        if self.op == "exists":
            return has
        return not has


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: dict[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _split_terms(text: str) -> list[str]:
    terms, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append(cur)
            cur = ""
        else:
            cur += ch
    terms.append(cur)
    return [t for t in terms if t.strip()]


def parse_selector(text: str) -> Selector:
    """Parse a label selector or raise ValueError naming the term that is wrong."""
    reqs = []
    for term in _split_terms(text):
        m = _TERM.match(term)
        if not m:
            raise ValueError(f"'{term.strip()}' is not a selector term (examples: app=web, tier!=db, "
                             "env in (a,b), !legacy)")
        if m.group("nk"):
            reqs.append(Requirement(m.group("nk"), "!exists"))
        elif m.group("op"):
            reqs.append(Requirement(m.group("k"), "!=" if m.group("op") == "!=" else "=", (m.group("v"),)))
        elif m.group("setop"):
            values = tuple(v.strip() for v in m.group("set").split(",") if v.strip())
            reqs.append(Requirement(m.group("k"), m.group("setop"), values))
        else:
            reqs.append(Requirement(m.group("k"), "exists"))
    return Selector(tuple(reqs))
