"""`arm_stop_deadline`: a stopping worker exits, with one line, if its stop hangs."""

from __future__ import annotations

import logging
import threading

import pytest

from invsync.cli import arm_stop_deadline


def test_a_stop_still_running_at_the_deadline_exits_with_status_0(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exited: list[int] = []
    done = threading.Event()

    def exit_now(code: int) -> None:
        exited.append(code)
        done.set()

    with caplog.at_level(logging.WARNING, logger="invsync.worker"):
        timer = arm_stop_deadline(0.05, exit_now=exit_now)
        assert done.wait(5.0)
    assert exited == [0]
    assert timer.daemon  # never keeps a finished process alive
    assert "still stopping 0 s after the consumer stopped" in caplog.text
