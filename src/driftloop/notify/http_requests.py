"""One HTTP request of a notifier (httpx), with network failures and error replies turned into
failed :class:`DeliveryResult`s that say whether a retry may help."""

from __future__ import annotations

from typing import Any

import httpx

from driftloop._version import __version__
from driftloop.notify.base import DeliveryResult

USER_AGENT = f"driftloop/{__version__}"


def describe_error_body(response: httpx.Response) -> str:
    """The useful part of an error reply: Jira's ``errors``/``errorMessages``, GitHub's
    ``message``, else the start of the body."""
    try:
        body: Any = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] if text else "(empty body)"
    if isinstance(body, dict):
        parts: list[str] = []
        messages = body.get("errorMessages")
        if isinstance(messages, list):
            parts.extend(str(m) for m in messages if m)
        errors = body.get("errors")
        if isinstance(errors, dict):
            parts.extend(f"{field}: {message}" for field, message in errors.items())
        if isinstance(body.get("message"), str):
            message = body["message"]
            doc = body.get("documentation_url")
            parts.append(f"{message} (see {doc})" if isinstance(doc, str) else message)
        if isinstance(body.get("error"), str):
            parts.append(body["error"])
        if parts:
            return "; ".join(parts)[:500]
    return response.text.strip()[:300]


class HttpSender:
    """An httpx client that never raises for HTTP or network trouble."""

    def __init__(self, *, timeout: float = 10.0, service: str) -> None:
        self.service = service
        self._client = httpx.Client(timeout=timeout, headers={"User-Agent": USER_AGENT})

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response | DeliveryResult:
        """The response (any status), or a failed result when no response came."""
        try:
            return self._client.request(method, url, **kwargs)
        except httpx.TimeoutException:
            return DeliveryResult.failed(f"{self.service} did not answer in time", retryable=True)
        except httpx.TransportError as exc:
            return DeliveryResult.failed(
                f"cannot reach {self.service}: {type(exc).__name__}: {exc}", retryable=True
            )

    def failure(self, response: httpx.Response, what: str) -> DeliveryResult:
        """A failed result for an unexpected status, retryable where HTTP says so."""
        return DeliveryResult.from_http(
            response.status_code,
            f"{what}: {self.service} answered {response.status_code}: "
            f"{describe_error_body(response)}",
            retry_after=response.headers.get("Retry-After"),
        )

    def close(self) -> None:
        self._client.close()
