"""Parsing of resource quantities (CPU, memory) and durations as users write them."""

from __future__ import annotations

import re

_MEMORY_UNITS = {
    "": 1,
    "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
    "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,  # compose style, case-insensitive below
}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]{0,2})\s*$")
_CPU_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)(m?)\s*$")
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_memory(value: str | int | float) -> int:
    """Return a memory quantity in bytes: `128Mi`, `1G`, `512m` (compose), `1048576`."""
    if isinstance(value, bool):
        raise ValueError("must be a quantity such as 128Mi or 1Gi, not a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return int(value)
    m = _MEMORY_RE.match(value)
    if not m:
        raise ValueError(f"'{value}' is not a memory quantity (examples: 128Mi, 1Gi, 500M)")
    number, unit = float(m.group(1)), m.group(2)
    factor = _MEMORY_UNITS.get(unit)
    if factor is None:
        factor = _MEMORY_UNITS.get(unit.lower()) if unit.lower() in ("b", "kb", "mb", "gb") else None
    if factor is None and unit.lower() in ("k", "m", "g", "t"):
        # compose writes 512m for megabytes; there is no milli-byte
        factor = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}[unit.lower()]
    if factor is None:
        raise ValueError(f"'{value}' has an unknown unit '{unit}' (use Ki, Mi, Gi, K, M or G)")
    return int(number * factor)


def parse_cpu(value: str | int | float) -> float:
    """Return CPUs as a float: `0.5`, `500m`, `2`."""
    if isinstance(value, bool):
        raise ValueError("must be a number of CPUs such as 0.5 or 500m, not a boolean")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    m = _CPU_RE.match(value)
    if not m:
        raise ValueError(f"'{value}' is not a CPU quantity (examples: 0.5, 500m, 2)")
    number = float(m.group(1))
    return number / 1000 if m.group(2) else number


def format_memory(n: int) -> str:
    """Format bytes the way users write them (binary units)."""
    for unit, factor in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if n >= factor and n % factor == 0:
            return f"{n // factor}{unit}"
    return str(n)


def approx_memory(n: float) -> str:
    """Bytes in binary units with one decimal, the way they are read: 1536 → "1.5Ki", 1105173 →
    "1.1Mi", 900 → "900". Parses as a quantity again (parse_memory)."""
    if abs(n) < 1024:
        return f"{n:.0f}"
    for unit in ("Ki", "Mi", "Gi", "Ti"):
        n /= 1024
        if round(abs(n), 1) < 1024 or unit == "Ti":  # 1048575 is "1.0Mi", not "1024.0Ki"
            break
    return f"{n:.1f}{unit}"


def parse_duration(value: str | int | float) -> float:
    """Return seconds from `10s`, `1m30s`, `500ms`, `2h`, or a bare number of seconds."""
    if isinstance(value, bool):
        raise ValueError("must be a duration such as 10s or 1m")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    text = value.strip()
    if not text:
        raise ValueError("must be a duration such as 10s or 1m")
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        n = float(m.group(1))
        total += n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        pos = m.end()
    if pos != len(text):
        # a bare number of seconds; not "nan", "inf" or a negative number, which float() accepts
        if not re.fullmatch(r"\d+(?:\.\d+)?", text):
            raise ValueError(f"'{value}' is not a duration (examples: 10s, 1m30s, 500ms)")
        return float(text)
    return total
