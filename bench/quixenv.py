"""The Quix Streams contender's own virtual environment, built on demand.

Quix Streams pins its own dependencies (confluent-kafka, rocksdict, pydantic, ...); they
must never meet Faust's in the project's `.venv`. `ensure()` creates `bench/.venv-quix`
with `python -m venv` and installs the pinned version, once: a marker file names the
version installed. On any failure it returns None and a one-line reason, and the bench
skips the contender instead of failing the whole run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

QUIX_VERSION = "3.28.1"
HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv-quix"
MARKER = VENV / ".quixstreams-version"


def python() -> Path:
    return VENV / "bin" / "python"


def ensure(venv: Path = VENV, version: str = QUIX_VERSION) -> tuple[Path | None, str]:
    """(the venv's python, "") when Quix Streams ``version`` is installed there, else
    (None, why not)."""
    py = venv / "bin" / "python"
    marker = venv / ".quixstreams-version"
    if marker.exists() and marker.read_text().strip() == version and py.exists():
        return py, ""
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(py), "-m", "pip", "install", "--quiet", f"quixstreams=={version}", "orjson"],
        [str(py), "-c", "import quixstreams, orjson"],
    ]
    print(f"[q] building {venv} (quixstreams=={version}) ...", file=sys.stderr)
    for cmd in steps:
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"`{' '.join(cmd[:3])} ...` failed: {exc}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, f"`{' '.join(cmd[:3])} ...` exited {done.returncode}: {tail[0]}"
    marker.write_text(version + "\n")
    return py, ""
