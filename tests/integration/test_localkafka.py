"""`invsync kafka start/status/stop` as a user runs them, on the cached jars."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
