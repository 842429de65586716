"""Every error llamasc raises on purpose.

The tree::

    LlamascError                      one readable line; CLI exit code; HTTP status + type
    ├── ConfigError                   bad settings, config file or model map     (exit 2, 400)
    ├── DiscoveryError                no llama-server / no model found           (exit 2, 500)
    ├── FlagError                     llama-server flags refused by the policy   (exit 2, 400)
    ├── UnknownModelError             a model id nobody configured               (exit 2, 404)
    ├── RequestError                  a malformed client request                 (400)
    │   ├── BodyTooLargeError         request body over the limit                (413)
    │   ├── HeadersTooLargeError      request headers over the limits            (431)
    │   └── RequestTimeoutError       headers or body not sent in time           (408)
    ├── AuthError                     missing or wrong API key                   (401)
    ├── ForbiddenError                a web page origin the operator did not list (403)
    ├── NotFoundError                 no such sidecar / route object             (404)
    ├── CapacityError                 pool full and nothing evictable in time    (503 + Retry-After)
    │   └── TooManyConnectionsError   the daemon's connection limit is reached   (503)
    ├── InsufficientMemoryError       the model cannot fit the memory budget     (503)
    ├── ConcurrencyLimitError         the model's concurrency stayed full        (429 + Retry-After)
    ├── ShuttingDownError             the daemon is stopping                     (503)
    ├── SidecarError                  a llama-server child misbehaved
    │   ├── SpawnError                it exited before becoming ready            (502)
    │   ├── ReadinessTimeoutError     it did not become ready in time            (504)
    │   ├── RpcWorkerError            an RPC worker of its model does not answer (502)
    │   ├── UpstreamError             it failed while serving a request          (502)
    │   │   ├── UpstreamStatusError   it answered with an HTTP error (``status``) (502)
    │   │   └── SidecarExitedError    it died while serving (exit code, stderr)  (502)
    │   └── UpstreamTimeoutError      it stopped answering within the timeouts   (504)
    ├── ModelClosedError              a library model used after close()
    ├── DaemonUnreachableError        `ps`/`kill` could not reach a daemon       (exit 1)
    ├── RemoteError                   SSH / remote host trouble (bench)          (exit 1)
    └── DataError                     eval / bench input data unusable           (exit 2)

Core code raises these; only the CLI turns them into a red line and an exit code, and
only the server turns them into an OpenAI-shaped error envelope.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

ECHO_LIMIT = 200


def clip(value: object, limit: int = ECHO_LIMIT) -> str:
    """A client's value as echoed in an error message: ``repr``-quoted, cut to ``limit``
    characters (a 1 MB model id must not come back as a 1 MB 404)."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return repr(text)
    return repr(text[:limit]) + f"... ({len(text)} characters)"


class LlamascError(Exception):
    """Base of every error llamasc raises on purpose. ``str(err)`` is one readable line."""

    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    error_type: ClassVar[str] = "server_error"
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, *, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details: tuple[str, ...] = tuple(details)

    def __str__(self) -> str:
        return self.message

    def to_envelope(self) -> dict[str, Any]:
        """The OpenAI-shaped error body: ``{"error": {"message", "type", "code"}}``."""
        body: dict[str, Any] = {
            "message": self.message,
            "type": self.error_type,
            "code": self.code,
        }
        if self.details:
            body["details"] = list(self.details)
        return {"error": body}

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers that go with this error (e.g. ``Retry-After``)."""
        return {}


class ConfigError(LlamascError):
    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"
    code = "invalid_config"


class DiscoveryError(LlamascError):
    exit_code = 2
    http_status = 500
    error_type = "server_error"
    code = "not_found_on_host"


class FlagError(LlamascError):
    """Flags refused by the policy. ``details`` lists every problem, not just the first."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"
    code = "invalid_flags"


class UnknownModelError(LlamascError):
    exit_code = 2
    http_status = 404
    error_type = "not_found_error"
    code = "model_not_found"


class RequestError(LlamascError):
    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class BodyTooLargeError(RequestError):
    http_status = 413
    code = "body_too_large"


class HeadersTooLargeError(RequestError):
    http_status = 431
    code = "headers_too_large"


class RequestTimeoutError(RequestError):
    http_status = 408
    code = "request_timeout"


class ForbiddenError(LlamascError):
    exit_code = 2
    http_status = 403
    error_type = "permission_error"
    code = "forbidden_origin"


class AuthError(LlamascError):
    exit_code = 2
    http_status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class NotFoundError(LlamascError):
    exit_code = 1
    http_status = 404
    error_type = "not_found_error"
    code = "not_found"


class _RetryLater(LlamascError):
    """An error whose answer tells the client when to try again (``Retry-After``)."""

    def __init__(
        self, message: str, *, retry_after: float = 5.0, details: Sequence[str] = ()
    ) -> None:
        super().__init__(message, details=details)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(max(1, round(self.retry_after)))}


class CapacityError(_RetryLater):
    http_status = 503
    error_type = "unavailable_error"
    code = "capacity"


class TooManyConnectionsError(CapacityError):
    code = "too_many_connections"


class InsufficientMemoryError(LlamascError):
    """The model cannot fit the memory budget even alone: waiting would not help."""

    http_status = 503
    error_type = "unavailable_error"
    code = "insufficient_memory"


class ConcurrencyLimitError(_RetryLater):
    """The model had ``concurrency`` requests in flight for the whole queue timeout."""

    http_status = 429
    error_type = "rate_limit_error"
    code = "concurrency_limit"


class ShuttingDownError(LlamascError):
    http_status = 503
    error_type = "unavailable_error"
    code = "shutting_down"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "5"}


class SidecarError(LlamascError):
    http_status = 502
    error_type = "upstream_error"
    code = "sidecar_error"


class SpawnError(SidecarError):
    """llama-server exited before it was ready; carries its exit code and stderr tail."""

    code = "spawn_failed"

    def __init__(
        self, message: str, *, exit_code: int | None = None, stderr_tail: Sequence[str] = ()
    ) -> None:
        super().__init__(message, details=stderr_tail)
        self.returncode = exit_code
        self.stderr_tail: tuple[str, ...] = tuple(stderr_tail)

    @property
    def lost_port(self) -> bool:
        """llama-server could not bind its port: another process took it after we checked it
        was free. Starting again on another port is the remedy, not giving up."""
        return any("couldn't bind" in line for line in (self.message, *self.stderr_tail))


class ReadinessTimeoutError(SidecarError):
    http_status = 504
    code = "readiness_timeout"


class RpcWorkerError(SidecarError):
    """An ``rpc-server`` the model is spread over does not answer; ``workers`` names them."""

    code = "rpc_worker_unreachable"

    def __init__(self, message: str, *, workers: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.workers: tuple[str, ...] = tuple(workers)


class UpstreamError(SidecarError):
    code = "upstream_failed"


class UpstreamTimeoutError(SidecarError):
    http_status = 504
    code = "upstream_timeout"


class UpstreamStatusError(UpstreamError):
    """An upstream answered with an HTTP error; ``status`` and its envelope's ``code`` kept."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        upstream_code: str | None = None,
        upstream_message: str = "",
        details: Sequence[str] = (),
    ) -> None:
        super().__init__(message, details=details)
        self.status = status
        self.upstream_code = upstream_code
        self.upstream_message = upstream_message or message


class SidecarExitedError(UpstreamError):
    """A llama-server child died while serving; carries its exit code and stderr tail."""

    code = "sidecar_exited"

    def __init__(
        self, message: str, *, exit_code: int | None = None, stderr_tail: Sequence[str] = ()
    ) -> None:
        super().__init__(message, details=stderr_tail)
        self.returncode = exit_code
        self.stderr_tail: tuple[str, ...] = tuple(stderr_tail)


class ModelClosedError(LlamascError):
    code = "model_closed"


class DaemonUnreachableError(LlamascError):
    exit_code = 1
    code = "daemon_unreachable"


class RemoteError(LlamascError):
    exit_code = 1
    code = "remote_error"


class DataError(LlamascError):
    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"
    code = "invalid_data"


__all__ = [
    "ECHO_LIMIT",
    "AuthError",
    "BodyTooLargeError",
    "CapacityError",
    "ConcurrencyLimitError",
    "ConfigError",
    "DaemonUnreachableError",
    "DataError",
    "DiscoveryError",
    "FlagError",
    "ForbiddenError",
    "HeadersTooLargeError",
    "InsufficientMemoryError",
    "LlamascError",
    "ModelClosedError",
    "NotFoundError",
    "ReadinessTimeoutError",
    "RemoteError",
    "RequestError",
    "RequestTimeoutError",
    "RpcWorkerError",
    "ShuttingDownError",
    "SidecarError",
    "SidecarExitedError",
    "SpawnError",
    "TooManyConnectionsError",
    "UnknownModelError",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamTimeoutError",
    "clip",
]
