"""The platform's own metrics (API latency, reconcile durations and errors, work-queue depth) and
the Prometheus text exposition format 0.0.4. Small and dependency-free: counters and histograms
with fixed label names, gauges read from callbacks at scrape time. Thread-safe."""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

Labels = tuple[str, ...]


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def format_value(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == int(v) and abs(v) < 2**53:
        return str(int(v))
    return repr(float(v))


def metric_header(name: str, kind: str, help_text: str) -> list[str]:
    """The # HELP and # TYPE lines that open a metric's samples."""
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def sample_line(name: str, labelnames: Sequence[str], labels: Sequence[str], value: float,
                extra: tuple[str, str] | None = None) -> str:
    pairs = [f'{k}="{escape_label(v)}"' for k, v in zip(labelnames, labels, strict=True)]
    if extra is not None:
        pairs.append(f'{extra[0]}="{extra[1]}"')
    return f"{name}{{{','.join(pairs)}}} {format_value(value)}" if pairs else f"{name} {format_value(value)}"


class Metric:
    kind = "untyped"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return metric_header(self.name, self.kind, self.help)

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[Labels, float] = {}

    def inc(self, labels: Labels = (), amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [sample_line(self.name, self.labelnames, k, v) for k, v in items]


class Histogram(Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = (),
                 buckets: Sequence[float] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)) -> None:
        super().__init__(name, help_text, labelnames)
        self.buckets = tuple(sorted(buckets))
        self._values: dict[Labels, list[float]] = {}  # per-bucket counts (not cumulative), then sum, count

    def observe(self, labels: Labels, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        with self._lock:
            row = self._values.get(labels)
            if row is None:
                row = self._values[labels] = [0.0] * (len(self.buckets) + 3)
            row[i] += 1  # index len(buckets) is the +Inf bucket
            row[-2] += value
            row[-1] += 1

    def render(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._values.items())
        out = self.header()
        for labels, row in items:
            cumulative = 0.0
            for bound, n in zip([*self.buckets, math.inf], row[:-2], strict=True):
                cumulative += n
                out.append(sample_line(f"{self.name}_bucket", self.labelnames, labels, cumulative,
                                       ("le", format_value(bound))))
            out.append(sample_line(f"{self.name}_sum", self.labelnames, labels, row[-2]))
            out.append(sample_line(f"{self.name}_count", self.labelnames, labels, row[-1]))
        return out


class CallbackGauge(Metric):
    """A gauge whose samples a callback returns at scrape time ((label values, value) pairs)."""

    kind = "gauge"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str],
                 callback: Callable[[], Iterable[tuple[Labels, float]]]) -> None:
        super().__init__(name, help_text, labelnames)
        self.callback = callback

    def render(self) -> list[str]:
        try:
            samples = list(self.callback())
        except Exception:  # noqa: BLE001 — a broken source must not break the scrape
            return []
        return self.header() + [sample_line(self.name, self.labelnames, k, v) for k, v in samples]


M = TypeVar("M", bound=Metric)


class Registry:
    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        self._lock = threading.Lock()

    def register(self, metric: M) -> M:
        """Add a metric; registering a name again replaces the older one (a restarted component)."""
        with self._lock:
            self._metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        with self._lock:
            metrics = list(self._metrics.values())
        lines: list[str] = []
        for m in metrics:
            lines.extend(m.render())
        return "\n".join(lines) + "\n" if lines else ""


REGISTRY = Registry()
API_REQUEST_SECONDS = REGISTRY.register(Histogram(
    "dockyard_api_request_duration_seconds", "API requests by method, route template and status.",
    ("method", "route", "status")))
RECONCILE_SECONDS = REGISTRY.register(Histogram(
    "dockyard_reconcile_duration_seconds", "Reconciles by kind.", ("kind",),
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)))
RECONCILE_ERRORS = REGISTRY.register(Counter(
    "dockyard_reconcile_errors_total", "Reconciles that failed and were requeued, by kind.", ("kind",)))
