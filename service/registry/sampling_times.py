"""How long this service has taken to sample a model, per image: what `GET /models/{name}`
reports for the autoregressive families, whose sampling is the slow one."""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

KEPT_RUNS = 32


@dataclass
class SamplingTimes:
    """Seconds per image of the last KEPT_RUNS sampling runs (appends are thread-safe)."""

    recent: deque[float] = field(default_factory=lambda: deque(maxlen=KEPT_RUNS))
    runs: int = 0

    def record(self, seconds: float, images: int) -> None:
        self.recent.append(seconds / images)
        self.runs += 1

    def median(self) -> float | None:
        return statistics.median(self.recent) if self.recent else None
