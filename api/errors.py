"""JSON errors: ``{"error": {"code", "message", "details"}}`` for every failure."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestPayloadError

from schemas.producer import BrokerUnavailable

log = logging.getLogger(__name__)

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "payload_too_large",
               415: "unsupported_media_type", 422: "unprocessable_entity", 503: "unavailable"}


class ApiError(Exception):
    """An error the client can act on."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


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


def error_middleware(max_body_bytes: int) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Turn every failure into the JSON error shape; ``max_body_bytes`` names the 413 limit."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.details)
        except BrokerUnavailable as exc:  # every route that produces: retry later, nothing is known stored
            log.warning("%s %s: %s", request.method, request.path, exc)
            response = error_response(503, "broker_unavailable",
                                      "the event broker did not acknowledge the request in time; retry later")
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, "payload_too_large",
                                  f"request body exceeds {max_body_bytes} bytes; send smaller batches",
                                  {"max_bytes": max_body_bytes})
        except RequestPayloadError as exc:  # a gzip or deflate body that does not decompress
            return error_response(400, "invalid_body", f"the body does not decode as its Content-Encoding says: {exc}")
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
