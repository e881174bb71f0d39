"""The request-rate limit a platform applies to its callers, as the fakes and the simulator apply it."""

from __future__ import annotations

import threading
import time


class RequestBucket:
    """A token bucket in the server's memory: ``rate`` requests per second, ``burst`` at once. Thread-safe."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), time.monotonic()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0 when a request may pass (and takes its token), else seconds until one could."""
        with self._lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return 0.0
            return (1 - self.tokens) / self.rate
