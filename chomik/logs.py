"""JSON-lines logging with the request id of the work at hand."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from typing import Any

REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)


def new_request_id() -> str:
    """A fresh request id."""
    return uuid.uuid4().hex


def accept_request_id(raw: str | None) -> str:
    """Keep a well-formed incoming request id, or make a new one."""
    if raw and _REQUEST_ID_RE.match(raw):
        return raw
    return new_request_id()


def current_request_id() -> str | None:
    """The request id of the request, event or job being handled, if any."""
    return request_id_var.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, extras."""

    def __init__(self, process: str) -> None:
        super().__init__()
        self.process = process

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S")
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "process": self.process,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or current_request_id(),
        }
        for key in ("event_id", "event_type", "topic", "gid", "service"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


JsonFormatter.converter = time.gmtime


_base_factory = logging.getLogRecordFactory()


def _stamped_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    """Stamp each record with the request id when it is made, not when it is shown."""
    record = _base_factory(*args, **kwargs)
    if not hasattr(record, "request_id"):
        record.request_id = current_request_id()
    return record


def configure_logging(process: str, level: str = "INFO") -> None:
    """Send every log record of this process to stderr as JSON lines."""
    logging.setLogRecordFactory(_stamped_record)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(process))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("kafka", "apscheduler.executors", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
