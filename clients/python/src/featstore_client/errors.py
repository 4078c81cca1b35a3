"""Exceptions of the featstore client, one class per class of failure (docs/wire.md,
"Errors"). Every error a server sends is a :class:`ServerError` subclass carrying the
HTTP status and the server's message."""

from __future__ import annotations


class FeatstoreError(Exception):
    """Base class of every error this client raises."""


class ConnectionFailed(FeatstoreError):
    """The server could not be reached, or the connection broke mid-request."""


class DecodeError(FeatstoreError):
    """An answer does not follow the wire format (truncated, unknown version, ...)."""


class ServerError(FeatstoreError):
    """The server answered with an error status."""

    def __init__(self, status: int, message: str, body: object = None):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.body = body


class BadRequest(ServerError):
    """400: a malformed body, path or query; an invalid id; a refused change."""


class PushRejected(BadRequest):
    """400 for a push: nothing was applied. ``rejected`` lists ``(index, reason)``."""

    def __init__(self, status: int, message: str, body: object, rejected: list[tuple[int, str]]):
        super().__init__(status, message, body)
        self.rejected = rejected


class NotFound(ServerError):
    """404: an unknown entity type, feature, group, version, service or path."""


class MethodNotAllowed(ServerError):
    """405."""


class Conflict(ServerError):
    """409: a version not ready; nothing to roll back to; a feature in use."""


class Gone(ServerError):
    """410: a retired feature service."""


class PayloadTooLarge(ServerError):
    """413: the request body is over the server's limit."""


class Refused(ServerError):
    """422: a load gate (validation) refused the new version."""


class Unavailable(ServerError):
    """503: shed under load, or the stream writer cannot write. Safe to retry after
    ``retry_after`` seconds."""

    def __init__(self, status: int, message: str, body: object = None, retry_after: float | None = None):
        super().__init__(status, message, body)
        self.retry_after = retry_after


class InternalError(ServerError):
    """500 (and other 5xx): an internal failure on the server."""


_BY_STATUS: dict[int, type[ServerError]] = {
    400: BadRequest,
    404: NotFound,
    405: MethodNotAllowed,
    408: BadRequest,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    422: Refused,
    503: Unavailable,
}


def error_for(status: int, body: object, retry_after: float | None = None) -> ServerError:
    """The exception for an error answer of ``status`` with the decoded ``body``."""
    message = body.get("error", "") if isinstance(body, dict) else str(body)
    if status == 400 and isinstance(body, dict) and body.get("rejected"):
        rejected = [(int(r["index"]), str(r["reason"])) for r in body["rejected"]]
        return PushRejected(status, message, body, rejected)
    if status == 503:
        return Unavailable(status, message, body, retry_after)
    cls = _BY_STATUS.get(status, InternalError if status >= 500 else ServerError)
    return cls(status, message, body)
