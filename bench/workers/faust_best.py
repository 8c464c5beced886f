"""Contender (c): batched Faust inventory agent.

BENCH_DESIGN=take  : Faust agent over ``take_events`` split per partition
                     (bench.faust_batched), Faust's normal per-record hand-off.
BENCH_DESIGN=fast  : streams.fastpath: per-partition batches straight from the
                     fetcher (no per-record stream machinery)  [default]
In both: one table write and at most one output record per distinct key per
batch, changelog partition = source partition.
BENCH_SEND=faust|direct  output via Topic.send, or straight to the app's aiokafka
                     producer (covered by Faust's pre-commit producer flush).
BENCH_BATCH (10000), BENCH_WITHIN (0.05 s) for take_events.
"""

from __future__ import annotations

import os

import orjson

from bench.common import Status, apply, env, output_value
from bench.faust_batched import coalesce, partition_batches
from bench.workers.faust_common import make_app, run

DESIGN = os.environ.get("BENCH_DESIGN", "fast")
SEND = os.environ.get("BENCH_SEND", "direct")
BATCH = int(os.environ.get("BENCH_BATCH", "10000"))
WITHIN = float(os.environ.get("BENCH_WITHIN", "0.05"))

app = make_app()
src = app.topic(
    env("BENCH_IN_TOPIC"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
OUT = env("BENCH_OUT_TOPIC")
out = app.topic(OUT, key_serializer="raw", value_serializer="raw")
table = app.Table("stock", default=None, key_type=bytes, partitions=int(env("BENCH_PARTITIONS")))
st = Status()
loads = orjson.loads


async def publish(changed) -> None:
    if SEND == "direct":
        send = app.producer._ensure_producer().send  # the app's aiokafka producer
        for key, state in changed.items():
            await send(OUT, output_value(key, state), key=key)
    else:
        for key, state in changed.items():
            await out.send(key=key, value=output_value(key, state))


def fold_event(state, event):
    return apply(state, loads(event.value), event.message.offset)


if DESIGN == "take":

    @app.agent(src)
    async def inventory(stream):
        async for tp, events in partition_batches(stream, BATCH, WITHIN):
            await publish(coalesce(table, events, fold_event))
            st.seen(len(events))
else:
    from streams import fastpath

    async def handle(tp, msgs) -> None:
        states, changed = {}, {}
        get = table.get
        for m in msgs:
            key = m.key
            s = states[key] if key in states else get(key)
            s, ch = apply(s, loads(m.value), m.offset)
            states[key] = s
            if ch:
                changed[key] = s
        for key, s in changed.items():  # current event = last message of this tp batch
            table[key] = s
        await publish(changed)
        st.seen(len(msgs))

    def fatal(exc: BaseException) -> None:
        raise SystemExit(f"batch handler failed: {exc!r}")

    fastpath.install(app, src, handle, fatal=fatal)


if __name__ == "__main__":
    run(app)
