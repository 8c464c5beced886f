"""The inventory state on disk (`streams/store.py`) on the real broker.

A restarted worker reopens its store and reads only the changelog after the offsets the
store records, ending with exactly the state of one clean pass; a store that claims more
than the changelog holds, or cannot be opened, is not trusted: the worker restores from
the changelog instead.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from models.inventory import KeyState
from streams.state import default_partition
from streams.store import KeyStore
from tests.integration.inventory_support import latest_by_key, read_all, stock
from tests.integration.support import WorkerProcess, isolated_env, produce

pytestmark = pytest.mark.integration

KEYS = [f"WH{i % 3}:SKU-{i}" for i in range(40)]
READ_BACK = re.compile(rb"inventory state restored: (\d+) changelog records read back")


def _store_path(data_dir: Path) -> Path:
    return data_dir / "v1" / "tables" / "inventory-state.rocksdb"


def _read_back(worker: WorkerProcess, since: int) -> list[int]:
    with worker.log_path.open("rb") as f:
        f.seek(since)
        return [int(n) for n in READ_BACK.findall(f.read())]


async def _published(bootstrap: str, topic: str, want: dict[str, int]) -> dict[str, int]:
    """The newest onHand of each key once every key of ``want`` shows its value."""
    out = await read_all(
        bootstrap,
        topic,
        until=lambda recs: all(
            latest_by_key(recs).get(k, {}).get("onHand") == v for k, v in want.items()
        ),
        quiet_s=1.0,
    )
    return {k: v["onHand"] for k, v in latest_by_key(out).items()}


async def _first_pass(tmp_path: Path, bootstrap: str) -> tuple[dict[str, str], WorkerProcess]:
    env = isolated_env(bootstrap, tmp_path / "data", INVSYNC_DEBOUNCE_MS="0")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start(ready=True)
    await produce(
        bootstrap,
        env["INVSYNC_TOPIC_STOCK_EVENTS"],
        [stock(f"s-{k}", k, 10 + i, kind="SNAPSHOT") for i, k in enumerate(KEYS)]
        + [stock(f"d-{k}", k, 2) for k in KEYS[::2]],
    )
    want = {k: 10 + i + (2 if i % 2 == 0 else 0) for i, k in enumerate(KEYS)}
    got = await _published(bootstrap, env["INVSYNC_TOPIC_INVENTORY"], want)
    assert {k: got.get(k) for k in KEYS} == want, worker.log_tail()
    return env, worker


async def test_a_killed_worker_reopens_its_store_and_reads_only_the_tail(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env, worker = await _first_pass(tmp_path, kafka_bootstrap)
    try:
        worker.kill9()
        # While it is down: more changes to some keys.
        await produce(
            kafka_bootstrap,
            env["INVSYNC_TOPIC_STOCK_EVENTS"],
            [stock(f"late-{k}", k, -1) for k in KEYS[:10]],
        )
        since = worker.log_path.stat().st_size
        worker.start(ready=True)
        want = {
            k: 10 + i + (2 if i % 2 == 0 else 0) - (1 if i < 10 else 0) for i, k in enumerate(KEYS)
        }
        got = await _published(kafka_bootstrap, env["INVSYNC_TOPIC_INVENTORY"], want)
        assert {k: got.get(k) for k in KEYS} == want, worker.log_tail()
        read_back = _read_back(worker, since)
        # The first pass wrote at least one changelog record per key; a reopened store
        # reads back at most the few a SIGKILL caught between the broker's ack and the
        # store's write, not the whole changelog.
        assert read_back and read_back[0] < len(KEYS), worker.log_tail()
    finally:
        worker.stop()


async def test_a_store_ahead_of_its_changelog_is_not_trusted(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env, worker = await _first_pass(tmp_path, kafka_bootstrap)
    worker.stop()
    key = KEYS[0]
    partition = default_partition(key, 4)
    store = KeyStore(_store_path(tmp_path / "data"))
    bogus = KeyState(on_hand=999, location="WH0").to_bytes()
    store.write([(key.encode(), partition, bogus, 0)], {partition: 10**9})
    store.close()
    since = worker.log_path.stat().st_size
    try:
        worker.start(ready=True)
        await produce(kafka_bootstrap, env["INVSYNC_TOPIC_STOCK_EVENTS"], [stock("p1", key, 1)])
        got = await _published(kafka_bootstrap, env["INVSYNC_TOPIC_INVENTORY"], {key: 13})
        assert got[key] == 13, worker.log_tail()  # 10 + 2 + 1: the changelog's, not 999's
        log = worker.log_path.read_bytes()[since:]
        assert f"partition {partition} records changelog offset 1000000000".encode() in log
    finally:
        worker.stop()


async def test_a_store_that_cannot_be_opened_is_rebuilt_from_the_changelog(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env, worker = await _first_pass(tmp_path, kafka_bootstrap)
    worker.stop()
    path = _store_path(tmp_path / "data")
    for file in path.iterdir():
        if file.is_file() and file.name != "LOCK":
            file.write_bytes(b"\x00garbage" * 64)
    key = KEYS[1]
    since = worker.log_path.stat().st_size
    try:
        worker.start(ready=True)
        await produce(kafka_bootstrap, env["INVSYNC_TOPIC_STOCK_EVENTS"], [stock("p2", key, 1)])
        got = await _published(kafka_bootstrap, env["INVSYNC_TOPIC_INVENTORY"], {key: 12})
        assert got[key] == 12, worker.log_tail()
        assert b"cannot be opened" in worker.log_path.read_bytes()[since:]
        # Restored from the whole changelog: at least one record per key.
        assert _read_back(worker, since)[0] >= len(KEYS)
    finally:
        worker.stop()
