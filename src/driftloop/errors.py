"""The one exception tree of driftloop; each error carries the HTTP status it maps to.

DriftloopError (500)
├── ConfigError (400)             malformed or impossible configuration
│   └── UnknownBackendError (400) a URL scheme no backend registers
├── MissingExtraError (500)       a backend whose optional extra is not installed
├── AuthError (401)               no or unknown credentials
│   └── ForbiddenError (403)      valid credentials, wrong scope
├── NotFoundError (404)           model, version, dataset, job, monitor ... does not exist
├── ConflictError (409)           the request contradicts the current state
│   ├── JobCancelledError (409)   a retrain job was cancelled while it ran
│   ├── LeaseLostError (409)      a control-plane write by a process that does not lead its role
│   └── ControlProcessLockedError (409)  another process runs this control role on the store
├── InvalidInputError (422)       well-formed but unacceptable input
│   ├── InvalidTextError (422)    a text breaks a ``serving.*`` limit (``limit`` names the key)
│   └── PayloadTooLargeError (413)
│       └── LimitError (413)      a request over a ``serving.*`` size limit (``limit`` names it)
├── IntegrityError (500)          stored bytes no longer match their recorded hash
├── TrainingError (500)           a trainer failed; nothing was registered
├── PredictionError (500)         a predictor's own code raised while it answered a request
├── WrongAnswerError (500)        a predictor answered what its declared output does not allow
└── BackendUnavailableError (503) a service (database, broker, object store, webhook) is down
    ├── OverloadedError (503)     the server sheds load; retry after ``retry_after`` seconds
    └── RateLimitedError (429)    the API key is over its rate limit; retry after ``retry_after``

The server answers each with its status and one JSON body (``driftloop.serving.errors``);
``driftloop.Client`` raises the class the body names.
"""

from __future__ import annotations


class DriftloopError(Exception):
    """Root of every error driftloop raises on purpose."""

    status_code: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(DriftloopError):
    status_code = 400


class UnknownBackendError(ConfigError):
    pass


class MissingExtraError(DriftloopError):
    status_code = 500


class AuthError(DriftloopError):
    status_code = 401


class ForbiddenError(AuthError):
    status_code = 403


class NotFoundError(DriftloopError):
    status_code = 404


class ConflictError(DriftloopError):
    status_code = 409


class JobCancelledError(ConflictError):
    """A retrain job was cancelled (``driftloop jobs cancel``) while it ran."""


class LeaseLostError(ConflictError):
    """A control-plane write by a process that does not lead its role (it was deposed, or never
    led): refused, so a deposed leader's late writes never land (409)."""


class ControlProcessLockedError(ConflictError):
    """Another process already runs this role of the control plane on this SQLite store."""


class InvalidInputError(DriftloopError):
    status_code = 422


class PayloadTooLargeError(InvalidInputError):
    status_code = 413


class LimitError(PayloadTooLargeError):
    """A configured size limit was exceeded; :attr:`limit` names the ``serving.*`` key."""

    def __init__(self, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class InvalidTextError(InvalidInputError):
    """A text breaks a configured limit that is not about the size of the whole request;
    :attr:`limit` names the ``serving.*`` key."""

    def __init__(self, message: str, limit: str | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class IntegrityError(DriftloopError):
    status_code = 500


class TrainingError(DriftloopError):
    status_code = 500


class PredictionError(DriftloopError):
    """A predictor's own code raised while it answered a request (500): names the model
    and the version; the traceback is in the server's log."""

    status_code = 500


class WrongAnswerError(DriftloopError):
    """A predictor answered what its declared output does not allow (500 when it serves)."""


class BackendUnavailableError(DriftloopError):
    status_code = 503


class OverloadedError(BackendUnavailableError):
    """The server sheds load: its queue would delay this request too long. Answered 503 with
    ``Retry-After``."""

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimitedError(BackendUnavailableError):
    """The API key sent more than its scope's ``serving.rate_limits`` allow. Answered 429 with
    ``Retry-After``; :attr:`retry_after` is the wait in seconds."""

    status_code = 429

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after
