"""Request rate limits: per API token (token bucket) and against password guessing (per user
name and per source address). Kept in memory: each server replica limits what it serves."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from dockyard.api.problems import Problem


@dataclass
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """`rate` requests per second with bursts of `burst`, per key."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._b: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds until a request would be."""
        now = time.monotonic()
        with self._lock:
            b = self._b.get(key)
            if b is None:
                b = self._b[key] = _Bucket(self.burst, now)
            b.tokens = min(self.burst, b.tokens + (now - b.at) * self.rate)
            b.at = now
            if b.tokens >= 1:
                b.tokens -= 1
                return 0.0
            if len(self._b) > 100_000:  # forget idle keys rather than grow without bound
                self._b = {k: v for k, v in self._b.items() if now - v.at < 60}
            return (1 - b.tokens) / self.rate


class RequestLimiter:
    def __init__(self) -> None:
        rate = float(os.environ.get("DOCKYARD_RATE_LIMIT", "500"))
        self.buckets = TokenBuckets(rate, rate * 2)

    def check(self, key: str) -> None:
        wait = self.buckets.take(key)
        if wait > 0:
            raise Problem(429, "too many requests with this token; slow down",
                          headers={"Retry-After": str(max(int(wait + 0.999), 1))})


@dataclass
class _Failures:
    count: int
    first: float
    locked_until: float = 0.0


class LoginThrottle:
    """After `slow_after` failures in `window` seconds a key's attempts are slowed down; after
    `lock_after` it is refused with 429 for `lock_for` seconds. Keys: user name and address."""

    def __init__(self, slow_after: int = 5, lock_after: int = 10, window: float = 600, lock_for: float = 300,
                 delay: float = 1.0) -> None:
        self.slow_after, self.lock_after, self.window = slow_after, lock_after, window
        self.lock_for, self.delay = lock_for, delay
        self._f: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def before(self, keys: list[str]) -> float:
        """Raise 429 if any key is locked; return how long to wait before checking the password."""
        now = time.monotonic()
        wait = 0.0
        with self._lock:
            for k in keys:
                f = self._f.get(k)
                if f is None:
                    continue
                if f.locked_until > now:
                    raise Problem(429, "too many failed logins; try again later",
                                  headers={"Retry-After": str(int(f.locked_until - now) + 1)})
                if now - f.first > self.window:
                    del self._f[k]
                elif f.count >= self.slow_after:
                    wait = max(wait, self.delay)
        return wait

    def failed(self, keys: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for k in keys:
                f = self._f.get(k)
                if f is None or now - f.first > self.window:
                    f = self._f[k] = _Failures(0, now)
                f.count += 1
                if f.count >= self.lock_after:
                    f.locked_until = now + self.lock_for

    def succeeded(self, user_key: str) -> None:
        with self._lock:
            self._f.pop(user_key, None)
