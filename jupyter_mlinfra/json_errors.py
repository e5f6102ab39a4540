"""One way every HTTP surface reads requests and answers errors: JSON bodies parsed strictly
(``json_body.py``), query parameters decoded naming the one that is not UTF-8, and errors as
JSON ``{"message", "field"}`` with the status the domain error carries (400, 401, 403, 404,
409, 413, 422, 503), never a traceback or an HTML page.

Mixed into the Jupyter server's handlers and the local agent's, ahead of tornado's
``RequestHandler`` so its hooks are the ones called.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tornado import web

from .errors import InvalidInput, MLInfraError
from .jobs.spec import RequestLimits
from .json_body import parse_json_body

log = logging.getLogger("jupyter_mlinfra")

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class JSONErrors(web.RequestHandler):
    internal_error = "internal error; see the server log"

    def max_request_bytes(self) -> int:
        """The largest body this surface reads (its settings say; overridden per surface)."""
        return RequestLimits().max_request_bytes

    def json_body(self) -> Any:
        """The request's JSON body, ``{}`` when empty; 400 or 413 when malformed or too big."""
        return parse_json_body(self.request.body or b"", self.max_request_bytes())

    def query_argument(self, name: str, default: str | None) -> str | None:
        """A query parameter as sent (``arguments.Argument``): not stripped, so that what a
        client sent is what is judged ("5 " is not a number, 256 spaces are too long)."""
        return self.get_query_argument(name, default, strip=False)

    def decode_argument(self, value: bytes, name: str | None = None) -> str:
        """Query and path arguments as text; bytes that are not UTF-8 are a 400 naming the
        parameter (tornado's own message names no field)."""
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            where = f"query parameter {name!r}" if name else "the request's path"
            raise InvalidInput(f"{where} is not valid UTF-8", name) from None

    def send_error(self, status_code: int = 500, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, MLInfraError):
            status_code = error.status
        super().send_error(status_code, **kwargs)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = kwargs.get("exc_info", (None, None))[1]
        if isinstance(error, MLInfraError):
            body = error.to_json()
        elif isinstance(error, web.HTTPError):
            body = {"message": error.log_message or self._reason, "field": None}
        else:
            body = {"message": self.internal_error, "field": None}
        if status_code == 401:
            self.set_header("WWW-Authenticate", 'token realm="jupyter-mlinfra"')
        elif status_code == 405:
            self.set_header("Allow", ", ".join(self.allowed_methods()))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def allowed_methods(self) -> list[str]:
        """The methods this handler implements (a 405 lists them in ``Allow``)."""
        mine, base = type(self), web.RequestHandler
        return [m for m in _METHODS if getattr(mine, m.lower()) is not getattr(base, m.lower())]

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """A user's mistake is not the server's error: one info line, no traceback."""
        if isinstance(value, MLInfraError):
            log.info("%s %s: %s", self.request.method, self.request.path, value.message)
        else:
            super().log_exception(typ, value, tb)
