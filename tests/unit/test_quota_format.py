"""How quota amounts are shown (policy/quota.py show): storage bytes for people, still quantities."""

from __future__ import annotations

from dockyard.model.quantity import parse_memory
from dockyard.policy.quota import show


def test_storage_used_is_human_and_exact_amounts_keep_their_unit() -> None:
    assert show("storage", 1105173) == "1.1Mi"  # a registry's usage next to a hard "1Mi"
    assert show("storage", 1024**2) == "1Mi" and show("storage", 6 * 1024**3) == "6Gi"
    assert show("storage", 1048575) == "1.0Mi" and show("storage", 1024**3 - 1) == "1.0Gi"
    assert show("storage", 0) == "0" and show("storage", 900) == "900"
    for v in (1105173, 1048575, 3 * 1024**3 + 5, 900):
        assert abs(parse_memory(show("storage", v)) - v) / v < 0.05  # a quantity again, within the rounding
    assert show("memory", 384 * 1024**2) == "384Mi"
