"""Bad request bodies get 422 with the reason, never 500.

FastAPI's own answers fall short in two ways (both found by the reliability tests):

- its 422 echoes each rejected input; JSON that Python parses but cannot write
  back (`NaN`, `Infinity`, a lone UTF-16 surrogate such as `"\\ud800"`) then fails
  while the error itself is rendered, and the client gets a 500;
- a body that fails to parse other than as a JSON syntax error (invalid UTF-8,
  nesting deeper than the parser allows, an integer with too many digits) gets a
  400 that does not say what is wrong.

The API's routes use `BodyErrorRoute`, which answers both with 422 and the reason.
"""

import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException  # what FastAPI raises for that 400

UNPARSABLE = "There was an error parsing the body"  # FastAPI's detail for that 400


class BodyErrorRoute(APIRoute):
    """An APIRoute whose body errors become a 422 that can always be rendered."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                return unprocessable(jsonable_encoder(error.errors()))
            except HTTPException as error:
                if error.status_code != status.HTTP_400_BAD_REQUEST or error.detail != UNPARSABLE:
                    raise
                reason = f"{type(error.__cause__).__name__}: {error.__cause__}"[:300]
                unparsable = {"type": "body_unparsable", "loc": ["body"], "msg": reason}
                return unprocessable([unparsable])

        return handle


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
