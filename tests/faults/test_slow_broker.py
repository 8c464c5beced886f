"""A slow broker (DESIGN.md "Faults the pipeline survives"): every answer the worker gets —
changelog writes' acknowledgements, fetches, commits — comes late, and the worker is
SIGKILLed while it waits on them. Judged as the other scenarios: one clean pass, and the
committed offsets reach the end."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from invsync import localkafka
from invsync.localkafka import free_port
from tests.faults.relay import DelayRelay
from tests.faults.support import EVENTS, RATE, SEED, Feeder, clean_pass, judge, settled_output
from tests.faults.support import workload as make_workload
from tests.faults.test_faults import WINDOWS, logs, start
from tests.integration.support import WorkerProcess, isolated_env

pytestmark = [pytest.mark.integration, pytest.mark.faults]

SLOW_S = float(os.environ.get("FAULT_SLOW_S", "0.25"))
"""How late each direction's bytes arrive (a request's answer: twice this)."""
ORDER_CONCURRENCY = "256"
"""Each order waits for two acknowledged command sends (RESERVE before Increff is called,
then ACCEPT), each about two round trips behind the producer's one in-flight request:
~2 s per order at this broker's 0.5 s round trip, so at the default 64 in flight the
lanes route ~32 orders/s (measured 35/s) while the workload brings ~200/s. An operator
behind a broker this far away raises INVSYNC_ORDER_CONCURRENCY (README); so does this
scenario, which is about exactness, not order throughput."""


@pytest.mark.parametrize("fast_path", ["true", "false"])
async def test_a_slow_broker_answers_late_and_a_sigkill_lands_while_writes_wait(
    tmp_path: Path, fast_path: str
) -> None:
    data_dir = tmp_path / "kafka"
    port, listen, relayed = free_port(), free_port(), free_port()
    broker = await asyncio.get_running_loop().run_in_executor(
        None,
        lambda: localkafka.start(port=port, data_dir=data_dir, log=False, relay=(listen, relayed)),
    )
    assert broker.bootstrap is not None
    direct = broker.bootstrap
    relay = DelayRelay(relayed, listen, delay_s=0.0)
    await relay.start()
    env = isolated_env(
        f"127.0.0.1:{relayed}",
        tmp_path / "data",
        INVSYNC_FAST_PATH=fast_path,
        INVSYNC_ORDER_CONCURRENCY=ORDER_CONCURRENCY,
        **WINDOWS,
    )
    feeder = Feeder(direct, env, make_workload(SEED + 400, EVENTS), RATE)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        await start(worker)
        feeder.start()
        await feeder.reach(0.25)
        relay.delay_s = SLOW_S
        await feeder.reach(0.55)
        worker.kill9()  # state writes, outputs and commits were in flight, all late
        await start(worker, ready=False)
        await feeder.finish()
        got = await settled_output(direct, env, [worker])
        assert relay.held > 100, f"the relay held back only {relay.held} chunks"
    finally:
        worker.stop()
        await relay.stop()
    try:
        judge(got, await clean_pass(direct, env, tmp_path), lambda: logs(worker))
    finally:
        localkafka.stop(data_dir)
