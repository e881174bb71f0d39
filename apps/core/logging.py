"""Structured logs: JSON lines (or a readable console form) through structlog."""

from __future__ import annotations

import logging
from typing import Any

import structlog

from apps.core.redaction import redact_log_event

SHARED_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.stdlib.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]


# Housekeeping that says nothing about the business: Celery's line per task received and succeeded, beat's
# line per job sent. Shown with LOG_LEVEL=DEBUG; at INFO only their warnings and errors (a failed task).
HOUSEKEEPING_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")


def _at_least_warning(level: str) -> str:
    number = logging.getLevelName(level.upper())
    if not isinstance(number, int) or number == logging.DEBUG:
        return level
    return logging.getLevelName(max(number, logging.WARNING))


def build_logging_config(*, level: str, fmt: str) -> dict[str, Any]:
    renderer = structlog.dev.ConsoleRenderer(colors=False) if fmt == "console" else structlog.processors.JSONRenderer()
    structlog.configure(
        # A line below its logger's level is dropped before any processing (the per-request DEBUG lines).
        processors=[
            structlog.stdlib.filter_by_level,
            *SHARED_PROCESSORS,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "structured": {
                "()": structlog.stdlib.ProcessorFormatter,
                "processors": [
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    # Last before rendering: the message, every value and the formatted exception, redacted.
                    redact_log_event,
                    renderer,
                ],
                "foreign_pre_chain": SHARED_PROCESSORS,
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "structured"}},
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.server": {"level": "WARNING"},
            "django.request": {"level": "ERROR"},
            "django.db.backends": {"level": "WARNING"},
            "pgserver": {"level": "WARNING"},
            "celery": {"level": level},
            **{name: {"level": _at_least_warning(level)} for name in HOUSEKEEPING_LOGGERS},
        },
    }
