"""Contender (a): raw aiokafka consume -> produce passthrough (getmany, orjson decode)."""

from __future__ import annotations

import asyncio
import os

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.common import Status, env


async def main() -> None:
    bs, src, out, group = (
        env("BENCH_BOOTSTRAP"),
        env("BENCH_IN_TOPIC"),
        env("BENCH_OUT_TOPIC"),
        env("BENCH_GROUP"),
    )
    st = Status()
    cons = AIOKafkaConsumer(
        src,
        bootstrap_servers=bs,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    prod = AIOKafkaProducer(bootstrap_servers=bs, linger_ms=5, max_batch_size=256 * 1024, acks=1)
    await cons.start()
    await prod.start()
    loads = orjson.loads
    send = prod.send
    last_commit = asyncio.get_running_loop().time()
    try:
        while True:
            batches = await cons.getmany(timeout_ms=500, max_records=10000)
            n = 0
            futs = []
            for tp, recs in batches.items():
                for r in recs:
                    ev = loads(r.value)
                    ev["seen"] = 1
                    futs.append(
                        await send(out, orjson.dumps(ev), key=r.key, partition=tp.partition)
                    )
                n += len(recs)
            if n:
                now = asyncio.get_running_loop().time()
                if now - last_commit > 0.2 or st.count + n >= st.expected:
                    await prod.flush()  # outputs acked before offsets commit
                    await cons.commit()
                    last_commit = now
                st.seen(n)
    finally:
        await prod.stop()
        await cons.stop()


if __name__ == "__main__":
    if os.environ.get("BENCH_UVLOOP", "1") == "1":
        import uvloop

        uvloop.install()
    asyncio.run(main())
