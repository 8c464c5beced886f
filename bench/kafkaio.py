"""Kafka I/O of the benchmark harness: topics, the backlog and live producers, reading
outputs back, and checking what a contender left behind against a clean fold."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common import apply, gen_events, iso_now, parse_ts


class Kafka:
    def __init__(self, bootstrap: str):
        self.bs = bootstrap
        self.admin: AIOKafkaAdminClient | None = None

    async def start(self) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bs)
        await self.admin.start()

    async def stop(self) -> None:
        if self.admin:
            await self.admin.close()

    async def create(self, name: str, partitions: int) -> None:
        await self.admin.create_topics([NewTopic(name, partitions, 1)])
        # wait until metadata sees it
        for _ in range(50):
            md = await self.admin.describe_topics([name])
            if (
                md
                and md[0].get("error_code", 0) == 0
                and len(md[0].get("partitions", [])) == partitions
            ):
                return
            await asyncio.sleep(0.1)

    async def committed(self, group: str, topic: str) -> int:
        try:
            offs = await self.admin.list_consumer_group_offsets(group)
        except Exception:
            return 0
        return sum(m.offset for tp, m in offs.items() if tp.topic == topic and m.offset > 0)


async def end_offsets(bs: str, topic: str, partitions: int) -> dict[int, int]:
    c = AIOKafkaConsumer(bootstrap_servers=bs)
    await c.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        eo = await c.end_offsets(tps)
        return {tp.partition: o for tp, o in eo.items()}
    finally:
        await c.stop()


async def sample_committed_lag(
    kafka: Kafka, group: str, topic: str, partitions: int, stop: asyncio.Event, every: float = 0.2
) -> tuple[int, float]:
    """Until ``stop``: the largest committed lag of ``group`` on ``topic`` (end offsets minus
    the group's committed offsets, summed over partitions) and the longest time its
    committed offsets stood still while behind, sampled every ``every`` s (plus a round
    trip)."""
    c = AIOKafkaConsumer(bootstrap_servers=kafka.bs)
    await c.start()
    tps = [TopicPartition(topic, p) for p in range(partitions)]
    biggest, longest = 0, 0.0
    last: int | None = None
    since = time.monotonic()
    try:
        while not stop.is_set():
            ends = sum((await c.end_offsets(tps)).values())
            done = await kafka.committed(group, topic)
            now = time.monotonic()
            lag = max(0, ends - done)
            biggest = max(biggest, lag)
            if done != last or lag == 0:
                last, since = done, now
            longest = max(longest, now - since)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every)
    finally:
        await c.stop()
    return biggest, longest


async def produce(bs: str, topic: str, n: int, k: int) -> float:
    p = AIOKafkaProducer(bootstrap_servers=bs, linger_ms=20, max_batch_size=512 * 1024, acks=1)
    await p.start()
    t0 = time.time()
    try:
        futs = []
        for key, ev in gen_events(n, k):
            futs.append(await p.send(topic, orjson.dumps(ev), key=key))
        await p.flush()
    finally:
        await p.stop()
    return time.time() - t0


async def produce_live(
    bs: str, topic: str, rate: int, seconds: float, k: int, start_id: int
) -> int:
    """Paced producer, occurredAt = send time."""
    p = AIOKafkaProducer(bootstrap_servers=bs, linger_ms=0, acks=1)
    await p.start()
    n = int(rate * seconds)
    tick = 0.005
    per_tick = max(1, int(rate * tick))
    try:
        it = gen_events(n, k, seed=11, live=True, start_id=start_id)
        t0 = time.perf_counter()
        sent = 0
        for key, ev in it:
            ev["occurredAt"] = iso_now()
            await p.send(topic, orjson.dumps(ev), key=key)
            sent += 1
            if sent % per_tick == 0:
                target = t0 + sent / rate
                d = target - time.perf_counter()
                if d > 0:
                    await asyncio.sleep(d)
        await p.flush()
    finally:
        await p.stop()
    return n


async def read_outputs(
    bs: str,
    topic: str,
    partitions: int,
    since_offsets: dict[int, int],
    until_offsets: dict[int, int] | None = None,
    not_before: float | None = None,
) -> list[float]:
    """Latencies (ms) of output records after since_offsets; with ``not_before`` (epoch
    s) only of those reflecting an event from then on (a debounced output of the backlog,
    published after it was committed, is not a live latency)."""
    c = AIOKafkaConsumer(bootstrap_servers=bs, enable_auto_commit=False)
    await c.start()
    lat: list[float] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        for tp in tps:
            c.seek(tp, since_offsets.get(tp.partition, 0))
        ends = until_offsets or await end_offsets(bs, topic, partitions)
        remaining = {p for p in range(partitions) if ends.get(p, 0) > since_offsets.get(p, 0)}
        pos = dict(since_offsets)
        deadline = time.time() + 30
        while remaining and time.time() < deadline:
            batch = await c.getmany(timeout_ms=500, max_records=20000)
            for tp, recs in batch.items():
                for r in recs:
                    v = orjson.loads(r.value)
                    asof = v.get("asOf") or v.get("occurredAt")
                    if asof and (not_before is None or parse_ts(asof) >= not_before):
                        # Quix Streams' `to_topic` keeps the input record's timestamp:
                        # an output then shows when it was made only in `publishedAt`
                        shown = r.timestamp
                        if v.get("publishedAt"):
                            shown = max(shown, parse_ts(v["publishedAt"]) * 1000.0)
                        lat.append(shown - parse_ts(asof) * 1000.0)
                    pos[tp.partition] = r.offset + 1
                if pos.get(tp.partition, 0) >= ends.get(tp.partition, 0):
                    remaining.discard(tp.partition)
    finally:
        await c.stop()
    return lat


async def read_all(bs: str, topic: str, partitions: int) -> list[Any]:
    """All records of a topic (ConsumerRecord list)."""
    ends = await end_offsets(bs, topic, partitions)
    c = AIOKafkaConsumer(
        bootstrap_servers=bs, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await c.start()
    out: list[Any] = []
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        c.assign(tps)
        await c.seek_to_beginning(*tps)
        pos = {p: 0 for p in range(partitions)}
        deadline = time.time() + 30
        while any(pos[p] < ends[p] for p in pos) and time.time() < deadline:
            for tp, recs in (await c.getmany(timeout_ms=500, max_records=50000)).items():
                out.extend(recs)
                if recs:
                    pos[tp.partition] = recs[-1].offset + 1
    finally:
        await c.stop()
    return out


async def verify_tables(bs: str, src: str, changelog: str, partitions: int) -> str:
    """Changelog partition == source partition of the key, and the final table
    state (last changelog value per key) == a clean fold of the input."""
    expected, src_part = await clean_fold(bs, src, partitions)
    cl = await read_all(bs, changelog, partitions)
    final: dict[bytes, Any] = {}
    wrong_part = 0
    for r in sorted(cl, key=lambda r: (r.partition, r.offset)):
        if src_part.get(r.key) != r.partition:
            wrong_part += 1
        final[r.key] = orjson.loads(r.value) if r.value is not None else None
    bad = sum(
        1
        for k, st in expected.items()
        if final.get(k) is None or final[k]["onHand"] != st["onHand"]
    )
    return (
        f"changelog {len(cl)} recs, wrong partition {wrong_part}, "
        f"keys {len(expected)}, wrong final onHand {bad}"
    )


async def clean_fold(
    bs: str, src: str, partitions: int
) -> tuple[dict[bytes, Any], dict[bytes, int]]:
    """The state of every key after one clean pass over the whole input, and its partition."""
    inp = await read_all(bs, src, partitions)
    expected: dict[bytes, Any] = {}
    src_part: dict[bytes, int] = {}
    for r in sorted(inp, key=lambda r: (r.partition, r.offset)):
        src_part[r.key] = r.partition
        expected[r.key], _ = apply(expected.get(r.key), orjson.loads(r.value), r.offset)
    return expected, src_part


async def verify_outputs(bs: str, src: str, out: str, partitions: int) -> str:
    """The newest output of every key (highest ``version``) carries the quantity of a clean
    fold of the whole input (backlog and live phase): max(0, onHand), as a key whose
    quantity does not change (on-hand below zero going further down) publishes nothing."""
    expected, _ = await clean_fold(bs, src, partitions)
    newest: dict[bytes, tuple[int, int]] = {}
    for r in await read_all(bs, out, partitions):
        v = orjson.loads(r.value)
        if r.key not in newest or v["version"] >= newest[r.key][0]:
            newest[r.key] = (v["version"], v["quantity"])
    bad = sum(
        1 for k, st in expected.items() if newest.get(k, (0, None))[1] != max(0, st["onHand"])
    )
    return (
        f"outputs: {len(expected) - bad} of {len(expected)} keys end at the clean fold's quantity"
    )


async def first_output_time(bs: str, out: str, partitions: int) -> float | None:
    """Timestamp (epoch s) of the earliest output record, if any."""
    if not sum((await end_offsets(bs, out, partitions)).values()):
        return None
    c = AIOKafkaConsumer(bootstrap_servers=bs, auto_offset_reset="earliest")
    await c.start()
    try:
        c.assign([TopicPartition(out, p) for p in range(partitions)])
        b = await c.getmany(timeout_ms=2000, max_records=1000)
    finally:
        await c.stop()
    ts = [r.timestamp / 1000 for recs in b.values() for r in recs]
    return min(ts) if ts else None
