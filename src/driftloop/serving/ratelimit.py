"""Per-key rate limits: a token bucket per API key, sized by its scope
(``serving.rate_limits.<scope>: {rate, burst}``); a request over it is answered 429 with
``Retry-After``, before the endpoint runs.

A bucket holds up to ``burst`` tokens and refills at ``rate`` tokens a second; each request takes
one. Buckets live in the process (each server process and replica counts on its own, so the
limit a key meets is per process); a scope without a configured limit is not limited.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping

from driftloop.config import RateLimitConfig, RateLimitedScope
from driftloop.errors import RateLimitedError as RateLimitedError  # the old import path
from driftloop.serving.keys import ApiKeyInfo

_MAX_BUCKETS = 100_000


class KeyRateLimiter:
    """Token buckets per key id, with each scope's ``rate`` and ``burst``."""

    def __init__(
        self,
        limits: Mapping[RateLimitedScope, RateLimitConfig],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = {str(scope): limit for scope, limit in limits.items()}
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, at)
        self._lock = threading.Lock()

    def check(self, key: ApiKeyInfo) -> None:
        """Take a token from ``key``'s bucket, or raise :class:`RateLimitedError`."""
        limit = self.limits.get(key.scope.value)
        if limit is None:
            return
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key.key_id, (float(limit.burst), now))
            tokens = min(float(limit.burst), tokens + (now - at) * limit.rate)
            if tokens < 1.0:
                self._buckets[key.key_id] = (tokens, now)
                wait = (1.0 - tokens) / limit.rate
                raise RateLimitedError(
                    f"API key {key.key_id} is over the {key.scope.value} rate limit "
                    f"({limit.rate:g}/s, burst {limit.burst}); retry after {math.ceil(wait)} s",
                    retry_after=wait,
                )
            if len(self._buckets) >= _MAX_BUCKETS and key.key_id not in self._buckets:
                self._buckets.clear()  # keys are few; this only bounds a pathological case
            self._buckets[key.key_id] = (tokens - 1.0, now)
