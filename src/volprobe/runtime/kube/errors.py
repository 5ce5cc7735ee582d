"""Errors from the API server: the ``Status`` it answers with, as exceptions callers can catch by case.

404, 409 and 410 have subclasses so callers catch exactly the case they handle. `ApiError.throttled`
says whether the server refused to process the request *now* (429, or 503 with a ``Retry-After``):
`volprobe.runtime.kube.transport.BudgetTransport` retries those and tells the budget.
"""

from __future__ import annotations

import email.utils
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx


class ApiError(Exception):
    """The API server answered with an error ``Status``."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body
        self.retry_after = retry_after

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """409: a stale resourceVersion, a failed precondition, or the name is taken."""
        return self.status == 409

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def gone(self) -> bool:
        """410: the resourceVersion (or continue token) is older than the server keeps."""
        return self.status == 410

    @property
    def throttled(self) -> bool:
        """The server refused to process the request now and wants it retried later."""
        return self.status == 429 or (self.status == 503 and self.retry_after is not None)


class NotFoundError(ApiError):
    """404."""


class ConflictError(ApiError):
    """409."""


class GoneError(ApiError):
    """410."""


_ERROR_CLASSES: dict[int, type[ApiError]] = {404: NotFoundError, 409: ConflictError, 410: GoneError}


def error_from_status(status: Mapping[str, Any], *, code: int | None = None) -> ApiError:
    """Build the right `ApiError` subclass from a ``Status`` object (a response or a watch ERROR)."""
    number = int(status.get("code") or code or 0)
    details = status.get("details")
    retry_after = None
    if isinstance(details, Mapping) and details.get("retryAfterSeconds") is not None:
        retry_after = float(details["retryAfterSeconds"])
    return _ERROR_CLASSES.get(number, ApiError)(
        number,
        str(status.get("reason") or ""),
        str(status.get("message") or ""),
        body=dict(status),
        retry_after=retry_after,
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_from_response(response: httpx.Response) -> ApiError:
    """The error of a response whose body has been read (``Status`` JSON, or any text)."""
    header_retry = parse_retry_after(response.headers.get("Retry-After"))
    try:
        decoded = response.json()
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        error = error_from_status(decoded, code=response.status_code)
        error.status = response.status_code
        if header_retry is not None:
            error.retry_after = header_retry
        return error
    return _ERROR_CLASSES.get(response.status_code, ApiError)(
        response.status_code,
        response.reason_phrase,
        response.text[:1000],
        body=decoded if decoded is not None else response.text,
        retry_after=header_retry,
    )
