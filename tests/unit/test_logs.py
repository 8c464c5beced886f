"""Log lines: JSON and text formats, per-request client lines, floods of identical errors."""

from __future__ import annotations

import io
import json
import logging
import logging.config
import time
from collections.abc import Callable, Iterator

import pytest

from streams.logs import RepeatFilter, log_context, logging_config
from streams.settings import SettingsError, load_settings

QUIETED = ("httpx", "httpcore", "aiohttp.access")
Configure = Callable[..., io.StringIO]


@pytest.fixture
def configure() -> Iterator[Configure]:
    """Apply `logging_config` to a StringIO; put the root logger back afterwards."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), {n: logging.getLogger(n).level for n in QUIETED})

    def apply(fmt: str, level: str = "info") -> io.StringIO:
        stream = io.StringIO()
        logging.config.dictConfig(logging_config(fmt, level, stream=stream))
        return stream

    yield apply
    for handler in root.handlers:
        if handler not in saved[1]:
            handler.close()
    root.handlers[:] = saved[1]
    root.setLevel(saved[0])
    for name, level in saved[2].items():
        logging.getLogger(name).setLevel(level)


def lines(stream: io.StringIO) -> list[str]:
    return stream.getvalue().splitlines()


def test_json_lines_carry_time_level_logger_message_and_context(configure: Configure) -> None:
    stream = configure("json")
    log = logging.getLogger("streams.router")
    log.warning("Increff rejected %s", "O-7", extra={"order_code": "O-7"})
    with log_context(key="WH1:SKU-1"):
        logging.getLogger("aiokafka.consumer").info("fetched")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    first, second, third = (json.loads(line) for line in lines(stream))
    assert first["level"] == "WARNING" and first["logger"] == "streams.router"
    assert first["message"] == "Increff rejected O-7" and first["order_code"] == "O-7"
    assert first["time"].endswith("+00:00") and first["time"][:2] == "20"
    assert second["key"] == "WH1:SKU-1" and second["logger"] == "aiokafka.consumer"
    assert "order_code" not in second
    assert "ValueError: boom" in third["exc_info"]


def test_text_lines_name_their_logger_and_context(configure: Configure) -> None:
    stream = configure("text")
    with log_context(order_code="O-9"):
        logging.getLogger("faust.worker").info("Ready")
    logging.getLogger("streams.topics").info("created")
    first, second = lines(stream)
    assert "[INFO] faust.worker: Ready [order_code=O-9]" in first
    assert second.endswith("[INFO] streams.topics: created")


def test_http_client_request_lines_only_at_debug(configure: Configure) -> None:
    stream = configure("text", "info")
    logging.getLogger("httpx").info('HTTP Request: PUT http://x/inventory "HTTP/1.1 200 OK"')
    logging.getLogger("httpx").warning("a warning still shows")
    assert [line.split("] ", 3)[-1] for line in lines(stream)] == ["httpx: a warning still shows"]

    stream = configure("text", "debug")
    logging.getLogger("httpx").info('HTTP Request: PUT http://x/inventory "HTTP/1.1 200 OK"')
    assert len(lines(stream)) == 1


def test_a_flood_of_identical_errors_is_bounded(configure: Configure) -> None:
    stream = configure("json")
    log = logging.getLogger("aiokafka")
    started = time.monotonic()
    deadline = started + 1.5
    sent = 0
    while time.monotonic() < deadline:
        log.error("Unable connect to node with id 1: [Errno 111] Connection refused")
        sent += 1
    log.error("Unable to update metadata from [1]")  # a distinct message still shows
    elapsed = time.monotonic() - started
    out = [json.loads(line) for line in lines(stream)]
    assert sent > 1000
    flood = [o for o in out if o["message"].startswith("Unable connect")]
    assert 1 <= len(flood) <= elapsed + 1, f"{len(flood)} lines for {sent} errors"
    assert out[-1]["message"] == "Unable to update metadata from [1]"
    if len(flood) > 1:
        assert flood[1]["suppressed"] > 0


def test_repeats_pass_once_a_second_with_the_count_held_back() -> None:
    now = [100.0]
    repeats = RepeatFilter(interval=1.0, clock=lambda: now[0])

    def record(msg: str, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord("aiokafka", level, __file__, 1, msg, (), None)

    passed = [repeats.filter(record("down")) for _ in range(5)]
    assert passed == [True, False, False, False, False]
    assert repeats.filter(record("another problem"))
    assert all(repeats.filter(record("info line", logging.INFO)) for _ in range(3))
    now[0] += 1.1
    again = record("down")
    assert repeats.filter(again)
    assert again.getMessage() == "down [4 similar lines suppressed]"
    assert again.suppressed == 4  # type: ignore[attr-defined]
    plain = record("down")
    now[0] += 1.1
    assert repeats.filter(plain) and plain.getMessage() == "down"


def test_repeat_memory_is_bounded() -> None:
    repeats = RepeatFilter(max_messages=10)
    for n in range(100):
        repeats.filter(logging.LogRecord("x", logging.ERROR, __file__, 1, f"m{n}", (), None))
    assert len(repeats._seen) == 10


def test_log_format_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVSYNC_LOG_FORMAT", "json")
    assert load_settings().log_format == "json"
    monkeypatch.setenv("INVSYNC_LOG_FORMAT", "xml")
    with pytest.raises(SettingsError, match="INVSYNC_LOG_FORMAT"):
        load_settings()
    monkeypatch.delenv("INVSYNC_LOG_FORMAT")
    assert load_settings().log_format == "text"


def test_one_problem_for_many_orders_is_one_line_a_second() -> None:
    """The same template with other arguments (an outage failing every order) is held back."""
    now = [100.0]
    repeats = RepeatFilter(interval=1.0, clock=lambda: now[0])

    def record(code: str) -> logging.LogRecord:
        return logging.LogRecord(
            "streams.orders", logging.WARNING, __file__, 1, "order %s failed: %r", (code, "x"), None
        )

    passed = [repeats.filter(record(f"O-{n}")) for n in range(50)]
    assert passed.count(True) == 1
    now[0] += 1.1
    later = record("O-99")
    assert repeats.filter(later)
    assert later.getMessage() == "order O-99 failed: 'x' [49 similar lines suppressed]"
