"""`CatchUpCommit`: the fast path commits soon after its queue runs empty, never two
commits at once, and never holding up the batch loop."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streams.fastpath import CATCH_UP_COMMIT_S, CatchUpCommit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Commits:
    """Counts commits; each waits for `release` when ``hold`` is set."""

    def __init__(self, *, hold: bool = False, fail: bool = False) -> None:
        self.started = 0
        self.release = asyncio.Event()
        self.hold = hold
        self.fail = fail

    async def __call__(self) -> None:
        self.started += 1
        if self.hold:
            await self.release.wait()
        if self.fail:
            raise RuntimeError("coordinator not available")


async def test_nothing_owed_waits_for_the_next_batch_as_long_as_it_takes() -> None:
    c = CatchUpCommit(Commits(), clock=Clock())
    assert c.wait_s() is None


async def test_the_first_catch_up_commits_at_once_the_next_after_the_interval() -> None:
    clock, commits = Clock(), Commits()
    c = CatchUpCommit(commits, clock=clock)
    c.acked()
    assert c.wait_s() == 0.0
    c.start()
    await asyncio.sleep(0)
    assert commits.started == 1 and not c.owed
    c.acked()
    assert c.wait_s() == pytest.approx(CATCH_UP_COMMIT_S)
    clock.now += CATCH_UP_COMMIT_S / 2
    assert c.wait_s() == pytest.approx(CATCH_UP_COMMIT_S / 2)
    clock.now += CATCH_UP_COMMIT_S
    assert c.wait_s() == 0.0
    c.start()
    await asyncio.sleep(0)
    assert commits.started == 2


async def test_a_running_commit_is_not_doubled_and_later_acks_stay_owed() -> None:
    clock, commits = Clock(), Commits(hold=True)
    c = CatchUpCommit(commits, clock=clock)
    c.acked()
    c.start()
    await asyncio.sleep(0)
    c.acked()  # acked while the commit runs: it may not include these
    clock.now += CATCH_UP_COMMIT_S
    c.start()
    await asyncio.sleep(0)
    assert commits.started == 1 and c.owed
    assert c.wait_s() == pytest.approx(CATCH_UP_COMMIT_S)  # looks again after the interval
    commits.release.set()
    await asyncio.sleep(0)
    clock.now += CATCH_UP_COMMIT_S
    c.start()
    await asyncio.sleep(0)
    assert commits.started == 2 and not c.owed


async def test_a_failed_commit_is_logged_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    c = CatchUpCommit(Commits(fail=True), clock=Clock())
    c.acked()
    with caplog.at_level(logging.WARNING, logger="streams.fastpath"):
        c.start()
        assert c.running is not None
        await c.running
    assert "committing offsets after catching up failed: coordinator not available" in (caplog.text)


async def test_stop_cancels_a_running_commit() -> None:
    c = CatchUpCommit(Commits(hold=True), clock=Clock())
    c.acked()
    c.start()
    await asyncio.sleep(0)
    c.stop()
    assert c.running is not None
    with pytest.raises(asyncio.CancelledError):
        await c.running


async def test_no_commit_starts_while_commits_are_held_back() -> None:
    """The flow suspended (a rebalance, the worker stopping): Faust commits itself."""
    clock, commits, allowed = Clock(), Commits(), [False]
    c = CatchUpCommit(commits, lambda: allowed[0], clock=clock)
    c.acked()
    c.start()
    await asyncio.sleep(0)
    assert commits.started == 0 and c.owed
    assert c.wait_s() == pytest.approx(CATCH_UP_COMMIT_S)
    allowed[0] = True
    clock.now += CATCH_UP_COMMIT_S
    c.start()
    await asyncio.sleep(0)
    assert commits.started == 1 and not c.owed
