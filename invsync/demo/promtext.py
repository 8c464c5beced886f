"""Just enough of the Prometheus text format to read a worker's `/metrics` in the demo."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LE = re.compile(r'le="([^"]+)"')


@dataclass(frozen=True, slots=True)
class Samples:
    """Samples by metric name: a list of (label text, value)."""

    by_name: dict[str, list[tuple[str, float]]] = field(default_factory=dict)

    def total(self, name: str) -> float:
        """Sum over every label set (0 when absent)."""
        return sum(v for _, v in self.by_name.get(name, []))

    def quantile(self, histogram: str, q: float) -> float | None:
        """`histogram_quantile(q, <histogram>_bucket)` over all series, as Prometheus does."""
        buckets: dict[float, float] = {}
        for labels, value in self.by_name.get(f"{histogram}_bucket", []):
            m = _LE.search(labels)
            if m is None:
                continue
            le = math.inf if m.group(1) == "+Inf" else float(m.group(1))
            buckets[le] = buckets.get(le, 0.0) + value
        return histogram_quantile(q, sorted(buckets.items()))


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Linear interpolation inside the bucket holding rank ``q * count`` (cumulative
    buckets sorted by upper bound, the last one +Inf). None without observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    count = buckets[-1][1]
    rank = q * count
    lower, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower
            if cumulative == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (cumulative - below)
        lower, below = upper, cumulative
    return lower


def parse(text: str) -> Samples:
    samples = Samples()
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        if m is None:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        samples.by_name.setdefault(m.group(1), []).append((m.group(2) or "", value))
    return samples
