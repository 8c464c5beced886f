"""The demo's pre-order lookups: asked while the simulator runs (latency), and once the
worker converged, every SKU checked against the simulator's ground truth."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import time
from collections import Counter
from collections.abc import Mapping

import httpx

from invsync.demo.simulator import Simulator

PATH = "/inventories/search-sku"
MAX_SKUS = 1000


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


class LookupProbe:
    """Asks `skus` SKUs (popular ones more often, as shoppers do) every `every_s`."""

    def __init__(
        self,
        web: str,
        headers: Mapping[str, str],
        sim: Simulator,
        *,
        skus: int = 50,
        every_s: float = 0.5,
    ) -> None:
        self.url = web + PATH
        self.headers = dict(headers)
        self.sim = sim
        self.skus = skus
        self.every_s = every_s
        self.latencies: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.checked: tuple[int, list[str]] | None = None
        """After `check`: (SKUs compared, the mismatches found)."""
        # Its own generator and weights: drawing from the simulator's would change the run.
        self._rng = random.Random(sim.config.seed)  # noqa: S311 - a demo, not crypto
        self._cum = list(itertools.accumulate(sim.weights))

    def p(self, q: float) -> float | None:
        return _percentile(self.latencies, q)

    async def run(self, http: httpx.AsyncClient) -> None:
        """Until cancelled: one lookup every `every_s`."""
        keys, cum = self.sim.keys, self._cum
        while True:
            drawn = (
                bisect.bisect_left(cum, self._rng.random() * cum[-1]) for _ in range(self.skus)
            )
            asked = list(dict.fromkeys(keys[min(i, len(keys) - 1)][1] for i in drawn))
            started = time.perf_counter()
            try:
                r = await http.post(self.url, json={"channelSkuCodes": asked}, headers=self.headers)
            except httpx.HTTPError:
                self.statuses[0] += 1
            else:
                self.statuses[r.status_code] += 1
                if r.status_code == 200:
                    self.latencies.append(time.perf_counter() - started)
            await asyncio.sleep(self.every_s)

    async def check(self, http: httpx.AsyncClient) -> list[str]:
        """Every SKU's lookup against the ground truth (per location); the mismatches."""
        truth: dict[str, dict[str, int]] = {}
        for (location, sku), quantity in self.sim.truth.quantities().items():
            truth.setdefault(sku, {})[location] = quantity
        skus = sorted(truth)
        mismatches: list[str] = []
        for start in range(0, len(skus), MAX_SKUS):
            asked = skus[start : start + MAX_SKUS]
            r = await http.post(self.url, json={"channelSkuCodes": asked}, headers=self.headers)
            if r.status_code != 200:
                mismatches.append(f"lookup answered {r.status_code}: {r.text[:200]}")
                break
            answer = r.json()
            found = {
                item["channelSkuCode"]: {
                    i["locationCode"]: i["quantity"] for i in item["inventories"]
                }
                for item in answer["successList"]
            }
            for sku in asked:
                if found.get(sku) != truth[sku]:
                    mismatches.append(f"{sku}: expected {truth[sku]}, lookup {found.get(sku)}")
        self.checked = (len(skus), mismatches)
        return mismatches

    def summary(self) -> list[str]:
        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value * 1000:.0f} ms"

        refused = {code: n for code, n in self.statuses.items() if code != 200}
        lines = [
            f"lookup        {self.statuses[200]:,} POST {PATH} of up to {self.skus} SKUs during "
            f"the run: p50 {ms(self.p(0.5))}, p99 {ms(self.p(0.99))}, max {ms(self.p(1.0))}"
            + (f" (other answers: {dict(sorted(refused.items()))})" if refused else "")
        ]
        if self.checked is not None:
            total, mismatches = self.checked
            if mismatches:
                lines.append(f"lookup check  MISMATCH: {len(mismatches)} of {total} SKUs")
                lines.extend(f"              {m}" for m in mismatches[:10])
            else:
                lines.append(
                    f"lookup check  OK: {total}/{total} SKUs answer the ground truth "
                    "at every location"
                )
        return lines
