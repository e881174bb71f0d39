"""At INFO the logs tell the business; housekeeping (requests, Celery's per-task lines, beat's ticks) is at DEBUG."""

from __future__ import annotations

import logging
import logging.config

import pytest

from apps.core.logging import HOUSEKEEPING_LOGGERS, build_logging_config


@pytest.fixture
def restore_logging(settings):
    yield
    logging.config.dictConfig(settings.LOGGING)


@pytest.mark.parametrize(
    ("level", "housekeeping"), [("INFO", "WARNING"), ("DEBUG", "DEBUG"), ("WARNING", "WARNING"), ("ERROR", "ERROR")]
)
def test_housekeeping_loggers_are_quiet_unless_debug(level, housekeeping):
    config = build_logging_config(level=level, fmt="console")
    assert config["root"]["level"] == level
    for name in HOUSEKEEPING_LOGGERS:
        assert config["loggers"][name]["level"] == housekeeping, name
    assert config["loggers"]["celery"]["level"] == level  # a worker's start and its errors stay


def test_at_info_a_task_success_is_dropped_and_a_task_failure_kept(restore_logging, capsys):
    logging.config.dictConfig(build_logging_config(level="INFO", fmt="console"))
    trace = logging.getLogger("celery.app.trace")
    trace.info("Task channels.sweep[1] succeeded in 0.01s: None")
    trace.error("Task channels.push[2] raised unexpected: RuntimeError()")
    logging.getLogger("celery.beat").info("Scheduler: Sending due task channels-sweep (channels.sweep)")
    logging.getLogger("stockroom.orders").info("order_in")
    err = capsys.readouterr().err
    assert "succeeded" not in err and "Sending due task" not in err
    assert "raised unexpected" in err and "order_in" in err


def test_a_request_line_is_debug_and_a_server_error_a_warning(restore_logging, client, capsys):
    logging.config.dictConfig(build_logging_config(level="INFO", fmt="console"))
    client.get("/healthz/live")
    assert "request" not in capsys.readouterr().err
    logging.config.dictConfig(build_logging_config(level="DEBUG", fmt="console"))
    client.get("/healthz/live")
    assert "path=/healthz/live" in capsys.readouterr().err
