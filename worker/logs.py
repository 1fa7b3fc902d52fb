"""structlog JSON logging. Log events carry coordinates and counts, never note or sentence text."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import TextIO

import orjson
import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def _dumps(obj: object, **_: object) -> str:
    """orjson, or where it refuses a value (a lone surrogate quoted from an input's id, an int
    past 64 bits) the standard library with every odd value escaped: a log line never raises."""
    try:
        return orjson.dumps(obj).decode()
    except TypeError:
        return json.dumps(obj, default=repr)


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """One JSON object per line on stderr (or ``stream``)."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=_dumps),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stderr),
        cache_logger_on_first_use=False,
    )


class _StructlogHandler(logging.Handler):
    """Forwards librdkafka's log lines (via confluent-kafka's ``logger``) as JSON events."""

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname.lower()
        method = getattr(structlog.get_logger("librdkafka"), level, None)
        if method is not None:
            method("librdkafka", message=record.getMessage())


def kafka_logger() -> logging.Logger:
    """A stdlib logger for confluent-kafka clients' ``logger`` setting."""
    logger = logging.getLogger("biomarker.librdkafka")
    if not logger.handlers:
        logger.addHandler(_StructlogHandler())
        logger.propagate = False
        logger.setLevel(logging.INFO)
    return logger


def where_raised(exc: BaseException) -> str:
    """``file:line in function`` of the innermost frame of ``exc``: where, without the message
    (which may quote the data, e.g. note text)."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "unknown"
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}"
