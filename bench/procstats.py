"""What the harness reads of a contender's process (and its children) from /proc, and
the invsync worker's own progress from its Prometheus endpoint."""

from __future__ import annotations

import os
import re
import subprocess
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree(pid: int) -> list[int]:
    """pid and its descendants."""
    pids = [pid]
    try:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
        ).stdout
        for child in (int(p) for p in out.split()):
            pids += tree(child)
    except (OSError, ValueError):
        pass
    return pids


def vm_hwm_kb(pid: int) -> int:
    """Peak RSS of pid and its descendants (sum of VmHWM, kB)."""
    total = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of pid and its descendants so far (s)."""
    total = 0
    for p in tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / CLK_TCK


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


_STOCK = re.compile(rb"^invsync_stock_events_total\{[^}]*\} ([0-9.e+]+)$", re.M)


def invsync_events(port: int) -> int | None:
    """Stock events the invsync worker on ``port`` applied (its /metrics), None if it
    does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=0.5) as r:
            body = r.read()
    except OSError:
        return None
    return int(sum(float(v) for v in _STOCK.findall(body)))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
