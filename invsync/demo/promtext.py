"""A worker's `/metrics`, read with prometheus_client's parser, summed and quantiled."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True, slots=True)
class Samples:
    """Samples by sample name (`x_total`, `x_bucket`, ...): a list of (labels, value)."""

    by_name: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    def total(self, name: str) -> float:
        """Sum over every label set (0 when absent)."""
        return sum(v for _, v in self.by_name.get(name, []))

    def quantile(self, histogram: str, q: float) -> float | None:
        """`histogram_quantile(q, <histogram>_bucket)` over all series, as Prometheus does."""
        buckets: dict[float, float] = {}
        for labels, value in self.by_name.get(f"{histogram}_bucket", []):
            if "le" not in labels:
                continue
            le = float(labels["le"])  # "+Inf" parses to inf
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
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.by_name.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples
