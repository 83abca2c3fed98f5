"""Structured logging with structlog: JSON lines off a TTY, console on a TTY, secrets redacted.

Every event passes through `redact_event` last before rendering, after exception tracebacks are
formatted, so a password cannot reach the output through a field, a DSN or an exception text.
Standard-library loggers (aiohttp, SQLAlchemy, asyncssh) are routed through the same chain.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from reporthubd import secrets
from reporthubd.config import LoggingSettings


def redact_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    return {key: secrets.redact(value) for key, value in event_dict.items()}


def _stringify_exceptions(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    for key, value in event_dict.items():
        if isinstance(value, BaseException):
            event_dict[key] = f"{type(value).__name__}: {value}"
    return event_dict


def configure(settings: LoggingSettings, stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    use_json = settings.format == "json" or (settings.format == "auto" and not stream.isatty())
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
        _stringify_exceptions,
        redact_event,
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer(default=str)
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.level)
    # Library chatter stays at WARNING unless we are debugging.
    for noisy in ("aiohttp.access", "sqlalchemy", "alembic", "asyncssh", "aiosqlite"):
        logging.getLogger(noisy).setLevel(
            logging.DEBUG if settings.level == "DEBUG" else logging.WARNING
        )


def set_level(level: str) -> None:
    logging.getLogger().setLevel(level)


def get(name: str, **context: Any) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger.bind(**context) if context else logger
