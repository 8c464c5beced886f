"""Coalescer: debounce, max-delay cap, stock-out flush, +1 -1 suppression."""

from __future__ import annotations

import pytest

from models.coalescer import Coalescer, should_publish


def test_debounce_waits_for_quiet() -> None:
    c = Coalescer(debounce_s=0.5, max_delay_s=5.0)
    c.mark("k", 0.0, atp=3, last_published=5)
    c.mark("k", 0.3, atp=4, last_published=5)
    assert c.due(0.6) == []  # only 0.3 s quiet
    assert c.next_deadline() is not None
    assert c.due(0.8) == ["k"]
    assert len(c) == 0
    assert c.due(10.0) == []


def test_max_delay_caps_a_key_that_never_goes_quiet() -> None:
    c = Coalescer(debounce_s=0.5, max_delay_s=2.0)
    t = 0.0
    flushed_at: list[float] = []
    while t < 5.0:
        c.mark("hot", t, atp=7, last_published=1)
        if c.due(t):
            flushed_at.append(t)
        t = round(t + 0.25, 2)
    assert flushed_at == [2.0, 4.25]


def test_stock_out_is_due_immediately() -> None:
    c = Coalescer(debounce_s=0.5, max_delay_s=5.0)
    assert c.mark("k", 1.0, atp=0, last_published=4) is True
    assert c.next_deadline() == 1.0
    assert c.due(1.0) == ["k"]


def test_stock_out_of_a_pending_key_jumps_the_window() -> None:
    c = Coalescer(debounce_s=0.5, max_delay_s=5.0)
    assert c.mark("k", 1.0, atp=2, last_published=4) is False
    assert c.mark("k", 1.1, atp=0, last_published=4) is True
    assert c.due(1.1) == ["k"]
    assert c.due(5.0) == []  # the stale heap entry is skipped


def test_zero_that_was_already_published_zero_waits() -> None:
    c = Coalescer(debounce_s=0.5, max_delay_s=5.0)
    c.confirm("k")
    assert c.mark("k", 1.0, atp=0, last_published=0) is False
    assert c.due(1.2) == []
    assert c.due(1.5) == ["k"]


def test_unconfirmed_key_dropping_to_zero_is_immediate() -> None:
    c = Coalescer(debounce_s=0.5, max_delay_s=5.0)
    assert c.mark("k", 1.0, atp=0, last_published=0) is True
    assert c.mark("never", 1.0, atp=0, last_published=None) is True
    assert sorted(c.due(1.0)) == ["k", "never"]


def test_debounce_zero_flushes_at_once() -> None:
    c = Coalescer(debounce_s=0.0, max_delay_s=0.0)
    for i in range(5):
        c.mark(f"k{i}", 3.0, atp=i + 1, last_published=None)
    assert len(c) == 5
    assert c.next_deadline() == 3.0
    assert sorted(c.due(3.0)) == [f"k{i}" for i in range(5)]


def test_keys_flush_in_deadline_order_and_independently() -> None:
    c = Coalescer(debounce_s=1.0, max_delay_s=10.0)
    c.mark("a", 0.0, atp=1, last_published=None)
    c.mark("b", 0.5, atp=1, last_published=None)
    c.mark("a", 0.9, atp=2, last_published=None)
    assert c.due(1.0) == []
    assert c.due(1.5) == ["b"]
    assert c.next_deadline() == 1.9
    assert c.due(1.9) == ["a"]
    assert c.next_deadline() is None


def test_discard_and_drop_partition() -> None:
    c = Coalescer(debounce_s=0.5, max_delay_s=5.0)
    for key in ("a", "b", "c"):
        c.mark(key, 0.0, atp=1, last_published=None)
        c.confirm(key)
    c.mark("z", 0.0, atp=0, last_published=3)
    c.discard("a")
    c.drop_partition(["b", "z"])
    assert "a" not in c and "b" not in c and "c" in c
    assert len(c) == 1
    assert not c.is_confirmed("b") and c.is_confirmed("a")
    assert c.due(1.0) == ["c"]
    # A discarded key that is marked again gets its own, later deadline.
    c.mark("a", 2.0, atp=1, last_published=None)
    assert c.due(2.4) == []
    assert c.due(2.5) == ["a"]


def test_drain_and_clear() -> None:
    c = Coalescer(debounce_s=0.5, max_delay_s=5.0)
    c.mark("a", 0.0, atp=1, last_published=None)
    c.mark("b", 0.0, atp=0, last_published=2)
    assert sorted(c.drain()) == ["a", "b"]
    c.mark("a", 1.0, atp=1, last_published=None)
    c.confirm("a")
    c.clear()
    assert len(c) == 0 and c.next_deadline() is None and not c.is_confirmed("a")


def test_should_publish() -> None:
    assert should_publish(3, None)
    assert should_publish(3, 4)
    assert not should_publish(3, 3)  # +1 -1: nothing to send
    assert should_publish(3, 3, confirmed=False)


def test_plus_one_minus_one_sends_nothing_once_confirmed() -> None:
    c = Coalescer(debounce_s=0.5, max_delay_s=5.0)
    c.confirm("k")
    c.mark("k", 0.0, atp=6, last_published=5)
    c.mark("k", 0.1, atp=5, last_published=5)
    assert c.due(1.0) == ["k"]
    assert not c.should_publish("k", 5, 5)
    assert c.should_publish("fresh", 5, 5)  # first flush after (re)assignment


def test_heap_does_not_grow_with_repeated_marks() -> None:
    c = Coalescer(debounce_s=0.5, max_delay_s=5.0)
    for i in range(10_000):
        c.mark("hot", i * 1e-4, atp=i, last_published=None)
    assert len(c._heap) == 1


def test_negative_windows_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        Coalescer(debounce_s=-1, max_delay_s=1)
