"""One way every HTTP surface answers errors: JSON ``{"message", "field"}`` with the status
the domain error carries (400, 403, 404, 409, 422, 503), never a traceback or an HTML page.

Mixed into the Jupyter server's handlers and the local agent's, ahead of tornado's
``RequestHandler`` so its hooks are the ones called.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from tornado import web

from .errors import MLInfraError

log = logging.getLogger("jupyter_mlinfra")


class JSONErrors(web.RequestHandler):
    internal_error = "internal error; see the server log"

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
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(body))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """A user's mistake is not the server's error: one info line, no traceback."""
        if isinstance(value, MLInfraError):
            log.info("%s %s: %s", self.request.method, self.request.path, value.message)
        else:
            super().log_exception(typ, value, tb)
