"""`invsync kafka start/status/stop` as a user runs them, on the cached jars."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from invsync import localkafka

pytestmark = pytest.mark.integration


def _path_without_maven(tmp_path: Path) -> str:
    """A PATH holding java but not mvn: proves a second start needs no Maven (no network)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    java = shutil.which("java")
    assert java is not None
    (bin_dir / "java").symlink_to(java)
    return str(bin_dir)


def _cli(*args: str, path: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path}
    return subprocess.run(
        [sys.executable, "-m", "invsync.cli", "kafka", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_start_status_stop_from_the_cache(kafka_bootstrap: str, tmp_path: Path) -> None:
    localkafka.ensure_jars(log=False)  # cached by the session broker (or resolved now)
    path = _path_without_maven(tmp_path)
    port = str(localkafka.free_port())
    data = str(tmp_path / "kafka")

    started = _cli("start", "--port", port, "--data-dir", data, path=path, cwd=tmp_path)
    try:
        assert started.returncode == 0, started.stderr
        assert f"127.0.0.1:{port}" in started.stdout, started.stdout
        assert (tmp_path / "kafka" / "kafka.log").exists()
        status = _cli("status", "--data-dir", data, path=path, cwd=tmp_path)
        assert status.returncode == 0, (status.stdout, status.stderr)
        assert "answering" in status.stdout
    finally:
        stopped = _cli("stop", "--data-dir", data, path=path, cwd=tmp_path)
    assert stopped.returncode == 0, (stopped.stdout, stopped.stderr)
    assert "stopped" in stopped.stdout, stopped.stdout
    after = _cli("status", "--data-dir", data, path=path, cwd=tmp_path)
    assert after.returncode == 1, (after.stdout, after.stderr)
    assert "not running" in after.stdout


def test_missing_java_is_explained(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _cli("start", "--data-dir", str(tmp_path / "k"), path=str(empty), cwd=tmp_path)
    assert done.returncode == 1
    assert "java" in done.stderr
    assert "install" in done.stderr


def test_stop_then_start_on_the_same_port_at_once(tmp_path: Path) -> None:
    """A broker stopped while clients are connected closes first, leaving TIME_WAIT on its
    port: the free-port check must bind as the broker does (SO_REUSEADDR), or the
    restart is refused for a minute."""
    localkafka.ensure_jars(log=False)
    port = localkafka.free_port()
    data = tmp_path / "kafka"
    localkafka.start(port=port, data_dir=data, log=False)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            assert localkafka.stop(data)
            assert client.recv(1) == b""  # the broker closed its side first
        again = localkafka.start(port=port, data_dir=data, log=False)
        assert again.answering and again.port == port
    finally:
        localkafka.stop(data)


def test_a_listening_port_is_still_seen_as_taken() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert not localkafka.port_free(server.getsockname()[1])


def test_stop_never_signals_a_process_that_is_not_its_broker(tmp_path: Path) -> None:
    """A stale pid file naming a live, unrelated process: stop leaves it alone."""
    data = tmp_path / "kafka"
    data.mkdir()
    bystander = subprocess.Popen(["sleep", "300"], start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        (data / "kafka.pid").write_text(str(bystander.pid))
        (data / "kafka.port").write_text("9")
        status = _cli("status", "--data-dir", str(data), path=os.environ["PATH"], cwd=tmp_path)
        assert status.returncode == 1 and "not running" in status.stdout, status.stdout
        stopped = _cli("stop", "--data-dir", str(data), path=os.environ["PATH"], cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        assert "not running" in stopped.stdout, stopped.stdout
        time.sleep(0.5)
        assert bystander.poll() is None, "stop signalled an unrelated process"
        assert not (data / "kafka.pid").exists()
    finally:
        os.killpg(bystander.pid, signal.SIGKILL)
        bystander.wait(10)


def test_python_dash_m_invsync_and_version(tmp_path: Path) -> None:
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    expected = f"invsync {pyproject['project']['version']}"
    for argv in (["-m", "invsync", "--version"], ["-m", "invsync.cli", "--version"]):
        done = subprocess.run(
            [sys.executable, *argv], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected
    helped = subprocess.run(
        [sys.executable, "-m", "invsync", "kafka", "start", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert helped.returncode == 0 and "--sasl-ssl-port" in helped.stdout
