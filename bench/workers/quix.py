"""Contender (q): Quix Streams, a stateful per-key ``apply`` producing the absolute quantity.

Runs in its own virtual environment (``bench/.venv-quix``, built by ``bench/quixenv.py``)
so Quix's dependencies (confluent-kafka, rocksdict, its own pydantic pins) never meet
Faust's. The rule is the one every contender runs (``bench.common.apply``): the key's
on-hand, idempotent by source offset and a ring of eventIds, kept in Quix's RocksDB state
(changelogged); each applied event produces the key's absolute quantity with ``to_topic``.

Quix commits every ``commit_interval`` (its default is 5 s); the bench gives it the same
1 s as the invsync worker (``BENCH_QUIX_COMMIT_INTERVAL`` to change it), so the committed
column compares the frameworks, not their defaults.
"""

from __future__ import annotations

import os
from typing import Any

from quixstreams import Application, State, message_context

from bench.common import Status, apply, env, output_value


def main() -> None:
    group = env("BENCH_GROUP")
    st = Status()
    app = Application(
        broker_address=env("BENCH_BOOTSTRAP"),
        consumer_group=group,
        auto_offset_reset="earliest",
        commit_interval=float(os.environ.get("BENCH_QUIX_COMMIT_INTERVAL", "1.0")),
        state_dir=f"/tmp/perf/quix-state/{group}",
        loglevel="WARNING",
    )
    src = app.topic(env("BENCH_IN_TOPIC"), value_deserializer="json", key_deserializer="bytes")
    out = app.topic(env("BENCH_OUT_TOPIC"), value_serializer="bytes", key_serializer="bytes")

    def fold(ev: dict[str, Any], key: bytes, timestamp: int, headers: Any, state: State) -> Any:
        current, changed = apply(state.get("s"), ev, message_context().offset)
        state.set("s", current)
        st.seen(1)
        return output_value(key, current) if changed else None

    sdf = app.dataframe(src)
    sdf = sdf.apply(fold, stateful=True, metadata=True)
    sdf = sdf.filter(lambda v: v is not None)
    sdf.to_topic(out)
    app.run()


if __name__ == "__main__":
    main()
