"""faust, mode and aiokafka log through the stdlib; forward their records as structlog JSON.

Only the message *template* is forwarded when it has arguments: faust formats message keys,
values and events into some of its lines (``%r``), and note text must never reach a log.
"""

from __future__ import annotations

import logging

import structlog

_LOGGERS = ("faust", "mode", "aiokafka", "kafka")


class _TemplateHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelname.lower()
        method = getattr(structlog.get_logger(record.name), level, None)
        if method is None:
            return
        text = str(record.msg) if record.args else record.getMessage()
        fields: dict[str, str] = {"logger": record.name, "message": text[:500]}
        if record.exc_info and record.exc_info[0] is not None:
            fields["error_class"] = record.exc_info[0].__name__
        method("library_log", **fields)


def bridge_library_logs(level: int = logging.WARNING) -> None:
    """Send faust's, mode's and aiokafka's records at ``level`` and above to structlog."""
    handler = _TemplateHandler()
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
        logger.setLevel(level)
