"""Errors become clear HTTP answers: a bad body gets 422 with the reason, never 500.

FastAPI's own answers fall short in two ways (both found by the reliability tests):

- its 422 echoes each rejected input; JSON that Python parses but cannot write
  back (`NaN`, `Infinity`, a lone UTF-16 surrogate such as `"\\ud800"`) then fails
  while the error itself is rendered, and the client gets a 500;
- a body that fails to parse other than as a JSON syntax error (invalid UTF-8,
  nesting deeper than the parser allows, an integer with too many digits) gets a
  400 that does not say what is wrong.

`install` answers both with 422 and the reason, for every route of the app, and
turns `KafkaError` (Kafka unreachable) into 503 with the reason.
"""

import math
from typing import Any

from fastapi import FastAPI, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException  # what FastAPI raises for that 400

from .health import KafkaError

UNPARSABLE = "There was an error parsing the body"  # FastAPI's detail for that 400


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid_body)
    app.add_exception_handler(HTTPException, _unparsable_body)
    app.add_exception_handler(KafkaError, _kafka_unavailable)


async def _invalid_body(request: Request, error: Exception) -> Response:
    if not isinstance(error, RequestValidationError):
        raise error
    return unprocessable(jsonable_encoder(error.errors()))


async def _unparsable_body(request: Request, error: Exception) -> Response:
    if not isinstance(error, HTTPException):
        raise error
    if error.status_code != status.HTTP_400_BAD_REQUEST or error.detail != UNPARSABLE:
        return await http_exception_handler(request, error)
    reason = f"{type(error.__cause__).__name__}: {error.__cause__}"[:300]
    return unprocessable([{"type": "body_unparsable", "loc": ["body"], "msg": reason}])


async def _kafka_unavailable(request: Request, error: Exception) -> Response:
    return JSONResponse({"detail": str(error)}, status.HTTP_503_SERVICE_UNAVAILABLE)


def unprocessable(errors: Any) -> JSONResponse:
    return JSONResponse({"detail": json_safe(errors)}, 422)


def json_safe(value: Any) -> Any:
    """`value` with every float and string made writable as strict UTF-8 JSON."""
    if isinstance(value, dict):
        return {json_safe(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value
