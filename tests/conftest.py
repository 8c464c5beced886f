"""Session fixtures: one real Apache Kafka broker for the whole test run.

Order of preference (DESIGN.md "Running Kafka"): `KAFKA_BOOTSTRAP_SERVERS` when set;
a testcontainers Kafka when a Docker engine answers; otherwise the local broker of
`invsync kafka start` on a free port with a temporary data dir. Never a mock.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from invsync import localkafka


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """A test run stopped with SIGTERM or SIGHUP (a CI timeout, a closed terminal)
    unwinds like Ctrl-C, so session fixtures still stop the broker and workers they
    started instead of leaving them running."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _interrupted)


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and bool(done.stdout.strip())


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    if _docker_engine_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka:
            yield kafka.get_bootstrap_server()
        return
    data_dir: Path = tmp_path_factory.mktemp("kafka")
    try:
        status = localkafka.start(port=localkafka.free_port(), data_dir=data_dir, log=False)
        assert status.bootstrap is not None
        yield status.bootstrap
    finally:
        localkafka.stop(data_dir)
