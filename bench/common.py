"""Shared pieces of the invsync benchmark: event generation, the toy inventory rule
(the same in every contender), status reporting and small helpers.

Nothing here imports Faust, so the raw-aiokafka contender stays Faust-free.
"""

from __future__ import annotations

import bisect
import itertools
import os
import random
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

IST = timezone(timedelta(hours=5, minutes=30))
RING = 16  # recent eventIds kept per key for dedupe


# ---------------------------------------------------------------- generation
def make_keys(k: int) -> list[str]:
    locs = max(1, k // 500)
    return [f"LOC{(i % locs):03d}:SKU{i:06d}" for i in range(k)]


def zipf_cum_weights(k: int, s: float = 1.1) -> list[float]:
    return list(itertools.accumulate(1.0 / (r**s) for r in range(1, k + 1)))


def iso_now(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, IST).isoformat(
        timespec="microseconds"
    )


def gen_events(
    n: int, k: int, seed: int = 7, s: float = 1.1, live: bool = False, start_id: int = 0
) -> Iterator[tuple[bytes, dict[str, Any]]]:
    """Yield (key bytes, event dict).  ~4% SNAPSHOT, the rest DELTA.

    ``live=False``: occurredAt is spread over the past hour (backlog);
    ``live=True``: the caller stamps occurredAt when it really sends.
    """
    rnd = random.Random(seed)
    keys = make_keys(k)
    cum = zipf_cum_weights(k, s)
    total = cum[-1]
    base = time.time() - 3600
    for i in range(start_id, start_id + n):
        key = keys[bisect.bisect_left(cum, rnd.random() * total)]
        loc, sku = key.split(":")
        if rnd.random() < 0.04:
            typ, qty = "SNAPSHOT", rnd.randint(0, 500)
        else:
            typ, qty = "DELTA", rnd.choice((-3, -2, -1, -1, -1, 1, 2, 5, 10, 24))
        ev = {
            "eventId": f"ev-{i:09d}",
            "type": typ,
            "locationCode": loc,
            "channelSkuCode": sku,
            "quantity": qty,
            "occurredAt": None if live else iso_now(base + i * 0.01),
            "reason": "PICK" if qty < 0 else "GRN",
        }
        yield key.encode(), ev


# ---------------------------------------------------------------- the rule
def parse_ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def new_state() -> dict[str, Any]:
    return {"onHand": 0, "version": 0, "offset": -1, "ids": [], "asOf": None}


def apply(
    state: dict[str, Any] | None, ev: dict[str, Any], offset: int
) -> tuple[dict[str, Any], bool]:
    """Apply one stock event to a key's state (idempotent by offset and eventId).

    Returns (state, changed).  Mutates and returns ``state`` (a fresh one if None).
    """
    if state is None:
        state = new_state()
    if offset <= state["offset"]:
        return state, False
    state["offset"] = offset
    ids = state["ids"]
    eid = ev["eventId"]
    if eid in ids:
        return state, False
    ids.append(eid)
    if len(ids) > RING:
        del ids[0]
    if ev["type"] == "SNAPSHOT":
        state["onHand"] = ev["quantity"]
    else:
        state["onHand"] += ev["quantity"]
    state["version"] += 1
    state["asOf"] = ev["occurredAt"]
    return state, True


def output_value(key: bytes, state: dict[str, Any]) -> bytes:
    loc, sku = key.decode().split(":", 1)
    on_hand = state["onHand"]
    return orjson.dumps(
        {
            "locationCode": loc,
            "channelSkuCode": sku,
            "quantity": on_hand if on_hand > 0 else 0,
            "onHand": on_hand,
            "reserved": 0,
            "version": state["version"],
            "asOf": state["asOf"],
            "publishedAt": iso_now(),
        }
    )


# ---------------------------------------------------------------- worker side
class Status:
    """Worker -> harness progress channel: a file of JSON lines."""

    def __init__(self) -> None:
        self.path = os.environ.get("BENCH_STATUS_FILE")
        self.expected = int(os.environ.get("BENCH_EXPECTED", "0") or 0)
        self.count = 0
        self.first: float | None = None
        self.done = False

    def write(self, **kw: Any) -> None:
        if self.path:
            with open(self.path, "ab") as f:
                f.write(orjson.dumps(kw) + b"\n")

    def seen(self, n: int) -> None:
        if self.first is None:
            self.first = time.time()
            self.write(first=self.first)
        self.count += n
        if not self.done and self.expected and self.count >= self.expected:
            self.done = True
            self.write(done=time.time(), count=self.count)


def env(name: str, default: str | None = None) -> str:
    v = os.environ.get(name, default)
    if v is None:
        raise SystemExit(f"missing env {name}")
    return v
