"""Helpers for integration tests: isolated settings, a worker subprocess, Kafka I/O."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from invsync import localkafka

CALLBACK_HEADERS = {"x-increff-token": "cb-test-token"}
"""What `isolated_env` configures as the callbacks' auth (a worker refuses to start without)."""


def isolated_env(bootstrap: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a worker whose app id and topics no other test shares."""
    tag = uuid.uuid4().hex[:8]
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "INVSYNC_APP_ID": f"t-{tag}",
        "INVSYNC_DATA_DIR": str(data_dir),
        "INVSYNC_WEB_PORT": str(localkafka.free_port()),
        "INVSYNC_WEB_HOST": "127.0.0.1",
        "INVSYNC_TOPIC_STOCK_EVENTS": f"stock-{tag}",
        "INVSYNC_TOPIC_ORDERS": f"orders-{tag}",
        "INVSYNC_TOPIC_SHIPMENTS": f"shipments-{tag}",
        "INVSYNC_TOPIC_INVENTORY": f"inventory-{tag}",
        "INVSYNC_TOPIC_ORDER_UPDATES": f"order-updates-{tag}",
        "INVSYNC_TOPIC_DEAD_LETTERS": f"dead-letters-{tag}",
        "INVSYNC_TOPIC_PARTITIONS": "4",
        "INVSYNC_CALLBACK_HEADERS": json.dumps(CALLBACK_HEADERS),
    }
    env.update(extra)
    return env


class WorkerProcess:
    """`invsync worker` as a subprocess, as an operator would run it."""

    def __init__(self, env: Mapping[str, str], log_path: Path) -> None:
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def web(self) -> str:
        return f"http://127.0.0.1:{self.env['INVSYNC_WEB_PORT']}"

    def start(self, timeout: float = 60.0, *, ready: bool = False) -> None:
        """Start and wait for `/health`; with `ready`, also until the worker has its
        partitions and recovered its tables (Faust logs "Worker]: Ready")."""
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "invsync.cli", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.web}/health", timeout=1.0).status_code == 200 and (
                    not ready or self._logged_since(log_start, "Worker]: Ready")
                ):
                    return
            time.sleep(0.25)
        tail = self.log_tail()
        self.kill9()  # a worker that failed to start is ended too, with its process group
        raise RuntimeError(f"worker not healthy within {timeout}s:\n{tail}")

    def _logged_since(self, offset: int, text: str) -> bool:
        with self.log_path.open("rb") as f:
            f.seek(offset)
            return text.encode() in f.read()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        if not self.proc or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill9()
            return None


async def produce(
    bootstrap: str, topic: str, records: Iterable[tuple[bytes | None, bytes]], **security: Any
) -> None:
    """`security`: aiokafka's security arguments for a secured listener."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **security)
    await producer.start()
    try:
        for key, value in records:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The group's committed offset of each partition of ``topic`` (none: not listed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}
