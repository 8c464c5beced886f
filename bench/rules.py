"""The inventory rules alone, in-process: what each stage of a batch costs per event
(`make bench-rules`).

    python -m bench.rules [--events 200000] [--keys 5000] [--batch 8000] [--gc 20000]

No broker and no Faust: `make bench` events (same generator, same seed) already encoded
as the worker receives them, run through the very code the worker runs per batch — the
fast decode (`models.fastdecode`), `InventoryEngine.apply`, `due` (publications at
debounce 0), `InventoryUpdate.encode`, `published`, and `KeyState.to_bytes` of each state
written — on a memory store. CPU time per stage, per input event. It is the ceiling of
the worker's throughput on this machine, whatever Kafka does: a worker cannot apply
events faster than this, so it says how far I/O work alone can take the worker.

``--gc`` is the young-generation threshold of the cyclic GC (the worker's is
`invsync.cli.GC_YOUNG_THRESHOLD`; Python's default is 700).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # `python bench/rules.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson

from bench.common import gen_events
from invsync.cli import GC_YOUNG_THRESHOLD
from models.engine import Input, InventoryEngine, MemoryStore
from models.fastdecode import decode_stock_event_fast
from models.inventory import SafetyStock
from streams.state import default_partition

STAGES = ("decode", "apply", "due", "encode", "published", "state bytes")


def run(events: int, keys: int, batch: int, partitions: int) -> tuple[dict[str, float], int, int]:
    """Seconds per stage, outputs and state writes, for ``events`` in batches."""
    homes: dict[str, int] = {}
    records: list[tuple[bytes, bytes, int, int]] = []
    for offset, (key, body) in enumerate(gen_events(events, keys)):
        text = key.decode()
        home = homes.get(text)
        if home is None:
            home = homes[text] = default_partition(text, partitions)
        records.append((key, orjson.dumps(body), home, offset))
    engine = InventoryEngine(
        MemoryStore(),
        stock_topic="warehouse.stock-events",
        safety=SafetyStock(),
        debounce_s=0.0,
        max_delay_s=0.0,
        reservation_ttl_s=86_400,
        partition_for=lambda key: default_partition(key, partitions),
    )
    engine.assigned(set(range(partitions)))
    engine.recovered(0.0)
    spent = dict.fromkeys(STAGES, 0.0)
    outputs = writes = 0
    clock = time.process_time
    topic = engine.stock_topic
    for start in range(0, events, batch):
        chunk = records[start : start + batch]
        t0 = clock()
        inputs = [Input(topic, p, o, decode_stock_event_fast(k, v)) for k, v, p, o in chunk]
        t1 = clock()
        applied = engine.apply(inputs, t1)
        t2 = clock()
        pubs = engine.due(t2, datetime.now(UTC))
        t3 = clock()
        for pub in pubs:
            pub.key.encode("utf-8")
            pub.update.encode()
        t4 = clock()
        recorded = engine.published(pubs)
        t5 = clock()
        latest = {w.key: w for w in [*applied.writes, *recorded]}
        for w in latest.values():
            w.state.to_bytes()
        t6 = clock()
        stamps = (t0, t1, t2, t3, t4, t5, t6)
        for i, stage in enumerate(STAGES):
            spent[stage] += stamps[i + 1] - stamps[i]
        outputs += len(pubs)
        writes += len(latest)
    return spent, outputs, writes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--keys", type=int, default=5_000)
    ap.add_argument("--batch", type=int, default=8_000, help="events per batch")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--gc", type=int, default=GC_YOUNG_THRESHOLD, help="young GC threshold")
    args = ap.parse_args(argv)
    print(f"generating {args.events:,} events over {args.keys:,} keys ...", file=sys.stderr)
    gc.set_threshold(args.gc, 10, 10)
    gc.collect()
    spent, outputs, writes = run(args.events, args.keys, args.batch, args.partitions)
    total = sum(spent.values())
    n = args.events
    print(
        f"{n:,} events, {args.keys:,} keys, batches of {args.batch:,}, GC threshold {args.gc:,},"
        f" Python {sys.version.split()[0]}: outputs/in {outputs / n:.3f}, "
        f"state writes/in {writes / n:.3f}\n"
    )
    print("| stage | CPU µs per event |\n|---|---:|")
    for stage in STAGES:
        print(f"| {stage} | {1e6 * spent[stage] / n:.2f} |")
    print(f"| **all** | **{1e6 * total / n:.2f}** (at most {n / total:,.0f} events/s) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
