"""`invsync demo` end to end: a short run converges to the ground truth, and Ctrl-C
stops it promptly with no worker left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _demo(kafka_bootstrap: str, tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "invsync.cli",
            "demo",
            "--work-dir",
            str(tmp_path / "demo"),
            *args,
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _pid_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat.split(") ", 1)[1].startswith("Z")


def _processes_with(text: str) -> list[int]:
    """Pids whose environment mentions `text` (the run's unique app id)."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_demo_converges_to_the_ground_truth(kafka_bootstrap: str, tmp_path: Path) -> None:
    proc = _demo(kafka_bootstrap, tmp_path, "--duration", "10", "--rate", "500", "--keys", "200")
    try:
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, output
    assert "OK: 200/200 keys match" in output, output
    assert "MISMATCH" not in output
    # The pre-order lookup ran during the demo, with its latency, and matched the truth.
    assert re.search(r"lookup +[1-9][\d,]* POST /inventories/search-sku .* p99 \d+ ms", output)
    assert "lookup check  OK: 50/50 SKUs" in output, output
    progress = [line for line in output.splitlines() if "events in" in line]
    assert len(progress) >= 5, output  # one line a second while feeding
    app_id = re.search(r"app id (\S+),", output)
    assert app_id is not None, output
    assert _processes_with(app_id.group(1)) == []


def test_sigint_stops_the_demo_and_its_worker(kafka_bootstrap: str, tmp_path: Path) -> None:
    proc = _demo(kafka_bootstrap, tmp_path, "--duration", "120", "--rate", "500")
    assert proc.stdout is not None
    lines: list[str] = []
    worker_pid = app_id = None
    deadline = time.monotonic() + 120
    try:
        for line in proc.stdout:
            lines.append(line)
            m = re.search(r"worker\s+pid (\d+), app id (\S+),", line)
            if m:
                worker_pid, app_id = int(m.group(1)), m.group(2)
            if "feeding" in line and "events in" in line:
                break  # the simulator is running
            assert time.monotonic() < deadline, "".join(lines)
        assert worker_pid is not None and app_id is not None, "".join(lines)
        assert _pid_running(worker_pid)
        sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal
        rest, _ = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert took < 20, f"took {took:.1f}s to stop:\n{output}"
    assert "worker stopped" in output
    assert not _pid_running(worker_pid)
    assert _processes_with(app_id) == []
    assert "summary" not in output
