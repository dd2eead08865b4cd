"""Logging for driftloop's own loggers (``driftloop.*``), set up by the long-running commands
(``up``, ``serve``, ``worker``, ``ingest``) from ``--log-level``/``--log-format`` or the
config's ``logging`` section.

Two formats: ``text`` (``2026-12-01T15:04:05.123Z WARNING driftloop.notify.log: ...``, UTC) and
``json`` (one object a line: ``time``, ``level``, ``logger``, ``message``, and ``exception``
when there is one). Every line passes through :class:`SecretRedactor` first: API keys
(``dl_<id>_<secret>`` keeps its id) and every secret value of the config (notifier URLs and
tokens, signing secrets, the insights key, the dashboard secret) become ``***``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal, TextIO

# Re-exported: the masking lives in the core (driftloop.redaction) so that config.py, which
# masks secrets in its errors, needs nothing from this module.
from driftloop.redaction import REDACTED as REDACTED
from driftloop.redaction import is_secret_key as is_secret_key
from driftloop.redaction import mask_url as mask_url

if TYPE_CHECKING:
    from driftloop.config import Config

LogFormat = Literal["text", "json"]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ROOT_LOGGER = "driftloop"

_API_KEY = re.compile(r"\b(dl_[A-Za-z0-9]+_)[A-Za-z0-9_-]{8,}")
_MIN_SECRET_LENGTH = 6  # shorter values would redact ordinary words
_PUBLIC_OF_TYPE = {"jira": {"url"}}
"""Keys that name a secret elsewhere but not in a section of this ``type``: a Jira site's
address is no secret (a webhook's ``url`` may carry a token, so it stays one)."""


def config_secrets(config: Config) -> list[str]:
    """Every string value of the config under a key that names a secret (``webhook_url``,
    ``token``, ``secret``, ``api_key``, an ``Authorization`` header ...) but ``public_url`` and
    ``api_url``, and the password inside a store, storage or transport URL."""
    found: list[str] = []

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            public = _PUBLIC_OF_TYPE.get(str(node.get("type")), set())
            for child_key, child in node.items():
                if str(child_key) not in public:
                    walk(child, str(child_key))
        elif isinstance(node, list | tuple):
            for child in node:
                walk(child, key)
        elif isinstance(node, str) and is_secret_key(key):
            found.append(node)

    raw = config.model_dump(mode="json", exclude={"base_dir"})
    walk({k: v for k, v in raw.items() if k not in {"store", "storage", "transport"}}, "")
    for url in (config.store, config.storage, config.transport):
        password = re.search(r"://[^:/@]+:([^@/]+)@", url)
        if password:
            found.append(password.group(1))
    return found


class SecretRedactor(logging.Filter):
    """Replaces the given secret values, URL passwords (:func:`mask_url`) and API keys (unless
    ``api_keys`` is false: ``driftloop keys create`` prints the new key) in a record's message
    and arguments."""

    def __init__(self, secrets: Iterable[str] = (), *, api_keys: bool = True) -> None:
        super().__init__()
        self.secrets = sorted(
            {s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True
        )
        self.api_keys = api_keys

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        text = mask_url(text)
        if not self.api_keys:
            return text
        return _API_KEY.sub(lambda match: match.group(1) + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redact(record.getMessage())
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def _utc_time(record: logging.LogRecord) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{stamp}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = f"{_utc_time(record)} {record.levelname} {record.name}: {record.getMessage()}"
        return f"{line}\n{record.exc_text}" if record.exc_text else line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _utc_time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class CurrentStderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the one that was
    there when logging was configured (a daemon or a test runner may replace it, and writing
    to a closed stream fails), unless :meth:`setStream` names a stream."""

    def __init__(self) -> None:
        super().__init__()
        self._chosen: TextIO | None = None

    @property
    def stream(self) -> TextIO:
        return getattr(self, "_chosen", None) or sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        self._chosen = value


def configure_logging(
    level: str = "INFO",
    log_format: LogFormat = "text",
    *,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send driftloop's loggers at ``level`` and above to ``stream`` (default stderr) in
    ``log_format``, redacting ``secrets`` and API keys; replaces a previous call's handler."""
    if level.upper() not in LOG_LEVELS:
        from driftloop.errors import ConfigError

        raise ConfigError(f"log level {level!r}: expected one of {', '.join(LOG_LEVELS)}")
    handler: logging.Handler = (
        logging.StreamHandler(stream) if stream is not None else CurrentStderrHandler()
    )
    handler.addFilter(SecretRedactor(secrets))
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    logger = logging.getLogger(ROOT_LOGGER)
    for previous in [h for h in logger.handlers if getattr(h, "driftloop_handler", False)]:
        logger.removeHandler(previous)
    handler.driftloop_handler = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    logger.propagate = False
    return handler


def configure_from(
    config: Config, level: str | None, log_format: str | None
) -> tuple[str, LogFormat]:
    """What a long-running command does: the options win over the config's ``logging``;
    returns the level and format chosen."""
    chosen = log_format or config.logging.format
    if chosen not in ("text", "json"):
        from driftloop.errors import InvalidInputError

        raise InvalidInputError(f"--log-format {chosen!r}: expected text or json")
    settings: tuple[str, LogFormat] = (
        (level or config.logging.level).upper(),
        "json" if chosen == "json" else "text",
    )
    configure_logging(*settings, secrets=config_secrets(config))
    return settings
