"""A token bucket that caps how many records per second a replay reads."""

from __future__ import annotations

import time


class TokenBucket:
    """``rate`` tokens per second, bursting to one second's worth (at least one token)."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._capacity = max(rate, 1.0)
        self._tokens = 1.0
        self._last = time.monotonic()

    def take(self, wanted: int, *, wait: float = 0.0) -> int:
        """Up to ``wanted`` tokens now; sleeps up to ``wait`` seconds when none is available."""
        self._refill()
        if self._tokens < 1 and wait > 0:
            time.sleep(min(wait, (1 - self._tokens) / self._rate))
            self._refill()
        granted = min(wanted, int(self._tokens))
        self._tokens -= granted
        return granted

    def refund(self, unused: int) -> None:
        """Give back tokens that were taken but not used (fewer records arrived)."""
        self._tokens = min(self._capacity, self._tokens + unused)

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._capacity, self._tokens + (now - self._last) * self._rate)
        self._last = now
