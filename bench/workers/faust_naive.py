"""Contender (b): naive per-event Faust agent: one table write + one send per event."""

from __future__ import annotations

import orjson

from bench.common import Status, apply, env, output_value
from bench.workers.faust_common import make_app, run

app = make_app()
src = app.topic(
    env("BENCH_IN_TOPIC"),
    key_type=bytes,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
)
out = app.topic(env("BENCH_OUT_TOPIC"), key_serializer="raw", value_serializer="raw")
table = app.Table("stock", default=None, key_type=bytes, partitions=int(env("BENCH_PARTITIONS")))
st = Status()


@app.agent(src)
async def inventory(stream):
    async for event in stream.events():
        key = event.key
        ev = orjson.loads(event.value)
        state, changed = apply(table.get(key), ev, event.message.offset)
        table[key] = state
        if changed:
            await out.send(key=key, value=output_value(key, state))
        st.seen(1)


if __name__ == "__main__":
    run(app)
