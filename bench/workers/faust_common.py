"""Faust app factory shared by the Faust contenders (settings from env)."""

from __future__ import annotations

import os
from typing import Any

import faust

from bench.common import env


def make_app(**overrides: Any) -> faust.App:
    group = env("BENCH_GROUP")
    conf: dict[str, Any] = dict(
        broker=f"kafka://{env('BENCH_BOOTSTRAP')}",
        store="memory://",
        topic_partitions=int(env("BENCH_PARTITIONS")),
        topic_replication_factor=1,
        table_standby_replicas=0,
        web_enabled=False,
        datadir=f"/tmp/perf/faust-data/{group}",
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=True,
    )
    conf.update(overrides)
    # BENCH_FAUST_CONF='{"broker_max_poll_records": 5000, ...}' tweaks any setting
    extra = os.environ.get("BENCH_FAUST_CONF")
    if extra:
        import json

        conf.update(json.loads(extra))
    return faust.App(group, **conf)


def run(app: faust.App) -> None:
    from faust.worker import Worker

    loop = None
    if os.environ.get("BENCH_UVLOOP", "1") == "1":
        import asyncio

        import uvloop

        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
    w = Worker(app, loglevel=os.environ.get("BENCH_LOGLEVEL", "warning"), loop=loop)
    if os.environ.get("BENCH_SPINNER", "0") != "1":
        # faust/worker.py:384-390: with loglevel >= WARN the progress spinner sets the
        # root logger to DEBUG, so every logger.debug() in the hot path builds a record.
        w.spinner = None
    w.execute_from_commandline()
