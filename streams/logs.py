"""The worker's log lines: text or JSON (`INVSYNC_LOG_FORMAT`), bounded under floods.

Faust (through mode) configures logging itself when the worker starts, from the
`logging_config` given to `faust.Worker`; `logging_config()` builds that dictionary, so
one handler formats Faust's, aiokafka's and our own lines alike. JSON lines come from
python-json-logger: `time`, `level`, `logger`, `message`, plus `key` / `order_code` when
the line concerns one (`extra=` on the call, or `log_context()` around the work),
`exc_info` for a traceback and `suppressed` for repeats held back.

A broker outage makes aiokafka repeat the same error many times a second, so a
WARNING-or-worse line is let through at most once a second per distinct message; the
next one that passes says how many were held back. httpx and httpcore log every
request at INFO: they are kept to WARNING unless the level is DEBUG.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.json import JsonFormatter

CONTEXT_FIELDS = ("key", "order_code")
TEXT_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s%(context)s"
PER_REQUEST_LOGGERS = ("httpx", "httpcore", "aiohttp.access")

_context: ContextVar[tuple[tuple[str, str], ...]] = ContextVar("invsync_log_context", default=())


@contextmanager
def log_context(**fields: str | None) -> Iterator[None]:
    """Attach `key=` / `order_code=` to every line logged inside (this task only)."""
    given = tuple((k, v) for k, v in fields.items() if v is not None and k in CONTEXT_FIELDS)
    token = _context.set(_context.get() + given)
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Copies `log_context()` fields onto the record; in text mode renders them as a suffix."""

    def __init__(self, text: bool = False) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        if self.text:
            shown = [f"{n}={getattr(record, n)}" for n in CONTEXT_FIELDS if hasattr(record, n)]
            record.context = f" [{' '.join(shown)}]" if shown else ""
        return True


class RepeatFilter(logging.Filter):
    """At most one WARNING-or-worse line per `interval` seconds per distinct problem.

    A problem is a logger's message *template* (before its arguments): the same failure
    for a thousand orders during a Kafka outage is one problem, logged about once a
    second with the count of similar lines held back (DESIGN.md "Faults"); metrics and
    the order-updates topic still count every one.
    """

    def __init__(
        self,
        interval: float = 1.0,
        level: int = logging.WARNING,
        max_messages: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.interval = interval
        self.level = level
        self.max_messages = max_messages
        self.clock = clock
        # (logger, level, message) -> [time let through, lines held back since]
        self._seen: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < self.level:
            return True
        message = record.getMessage()
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.interval:
            seen[1] += 1
            return False
        held = int(seen[1]) if seen is not None else 0
        self._seen[key] = [now, 0]
        self._seen.move_to_end(key)
        while len(self._seen) > self.max_messages:
            self._seen.popitem(last=False)
        if held:
            record.msg, record.args = f"{message} [{held} similar lines suppressed]", ()
            record.suppressed = held
        return True


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
    )


def text_formatter() -> logging.Formatter:
    return logging.Formatter(TEXT_FORMAT, defaults={"context": ""})


def logging_config(fmt: str, level: str, stream: Any = "ext://sys.stderr") -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary, also what `faust.Worker(logging_config=)` takes."""
    json_lines = fmt.lower() == "json"
    level = level.upper()
    quiet_level = "DEBUG" if level == "DEBUG" else "WARNING"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "context": {"()": ContextFilter, "text": not json_lines},
            "repeats": {"()": RepeatFilter},
        },
        "formatters": {"default": {"()": json_formatter if json_lines else text_formatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "stream": stream,
                "formatter": "default",
                "filters": ["context", "repeats"],
            }
        },
        "root": {"level": level, "handlers": ["default"]},
        "loggers": {name: {"level": quiet_level} for name in PER_REQUEST_LOGGERS},
    }
