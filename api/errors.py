"""JSON errors: ``{"error": {"code", "message", "details"}}`` for every failure."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from schemas.producer import BrokerUnavailable

log = logging.getLogger(__name__)

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "unprocessable_entity", 503: "unavailable"}


class ApiError(Exception):
    """An error the client can act on; ``headers`` go with its answer (``Retry-After``)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = dict(headers or {})


def bad_param(name: str, reason: str) -> ApiError:
    """400 naming the request parameter (or body field) at fault."""
    return ApiError(400, "validation_error", f"{name}: {reason}", {"field": name, "reason": reason})


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def error_response(status: int, code: str, message: str, details: Any = None) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return web.json_response({"error": body}, status=status)


#: The failures a route may end with that the client is told of (``client_error``), beside HTTP errors.
CLIENT_FAILURES = (ApiError, BrokerUnavailable, web.HTTPRequestEntityTooLarge, RequestPayloadError)


def client_error(request: web.Request, exc: Exception, max_body_bytes: int) -> ApiError:
    """What the client is told of ``exc``, one of ``CLIENT_FAILURES``; ``max_body_bytes`` names the
    413 limit. Every route answers these alike, whatever shape its errors take."""
    if isinstance(exc, BrokerUnavailable):  # every route that produces: retry later, nothing is known stored
        log.warning("%s %s: %s", request.method, request.path, exc)
        return ApiError(503, "broker_unavailable", "the event broker did not acknowledge the request in time; "
                        "retry later", headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return ApiError(413, "payload_too_large", f"request body exceeds {max_body_bytes} bytes; send smaller "
                        "batches", {"max_bytes": max_body_bytes})
    if isinstance(exc, RequestPayloadError):  # a gzip or deflate body that does not decompress
        return ApiError(400, "invalid_body", f"the body does not decode as its Content-Encoding says: {exc}")
    assert isinstance(exc, ApiError), exc
    return exc


def error_middleware(max_body_bytes: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Turn every failure into the JSON error shape; ``max_body_bytes`` names the 413 limit."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except CLIENT_FAILURES as exc:
            error = client_error(request, exc, max_body_bytes)
            response = error_response(error.status, error.code, error.message, error.details)
            response.headers.update(error.headers)
            return response
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            response = error_response(exc.status, _HTTP_CODES.get(exc.status, "error"), exc.reason)
            if "Allow" in exc.headers:  # a 405 lists the methods the resource has (RFC 9110)
                response.headers["Allow"] = exc.headers["Allow"]
            return response
        except Exception:
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, "internal_error", "internal error")

    return middleware
