"""Fault injection and request counting of the loopback API server, for tests and benchmarks."""

from __future__ import annotations

import random
import threading
from collections import deque

from voiceop.sandbox.apiserver.errors import ApiError
from voiceop.sandbox.apiserver.watch import Watch


class FaultsAndCounts:
    """Mixed into the Store: the state it reads is the Store's own."""

    _lock: threading.RLock
    _watches: set[Watch]
    _faults: dict[str, list[tuple[int, int, str | None]]]
    request_counts: dict[str, int]
    request_log: deque[tuple[str, str]]
    _random_faults: tuple[float, tuple[int, ...], random.Random] | None = None
    DROPPED = 0  # a code that is no answer: the connection is closed, as a timeout or a crash

    def fail_randomly(self, rate: float, codes: tuple[int, ...] = (500, 409, 429, 0), seed: int = 0) -> None:
        """From now on a `rate` share of HTTP requests fail with one of `codes` (0: dropped);
        rate 0 stops it. Requests made in this process through the Store are never failed."""
        with self._lock:
            self._random_faults = (rate, codes, random.Random(seed)) if rate > 0 else None

    def random_fault(self, verb: str) -> int | None:
        """The code this request fails with, or None. A 409 only ever answers a write, as on
        kube-apiserver (a conflict is about what a write would overwrite)."""
        with self._lock:
            if self._random_faults is None:
                return None
            rate, codes, rng = self._random_faults
            if rng.random() >= rate:
                return None
            possible = [c for c in codes if c != 409 or verb not in ("get", "list", "watch")]
            return rng.choice(possible) if possible else None

    def fail_next(self, verb: str, *, code: int = 409, count: int = 1, plural: str | None = None) -> None:
        """The next `count` requests with this HTTP verb (and plural) answer `code`."""
        with self._lock:
            self._faults.setdefault(verb.upper(), []).append((code, count, plural))

    def take_fault(self, verb: str, plural: str) -> ApiError | None:
        with self._lock:
            queue = self._faults.get(verb.upper(), [])
            for index, (code, count, only) in enumerate(queue):
                if only is None or only == plural:
                    if count <= 1:
                        queue.pop(index)
                    else:
                        queue[index] = (code, count - 1, only)
                    reason = {
                        409: "Conflict",
                        500: "InternalError",
                        503: "ServiceUnavailable",
                        429: "TooManyRequests",
                    }
                    return ApiError(code, reason.get(code, "Unknown"), f"injected {code} for {verb} {plural}")
        return None

    def drop_watches(self) -> int:
        """Close every open watch stream, as an API server restart or a load balancer would."""
        with self._lock:
            watches = list(self._watches)
            self._watches.clear()
        for watch in watches:
            watch.offer(None)
        return len(watches)

    def watch_count(self, plural: str | None = None) -> int:
        with self._lock:
            return sum(1 for w in self._watches if plural is None or w.rtype.plural == plural)

    def count_request(self, verb: str, path: str = "") -> None:
        with self._lock:
            self.request_counts[verb] = self.request_counts.get(verb, 0) + 1
            self.request_log.append((verb, path))
