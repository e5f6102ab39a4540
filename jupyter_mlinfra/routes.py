"""Every REST route of the extension, in one table (the OpenAPI document mirrors it, but for
the last: any other path under the API, a JSON 404)."""

from __future__ import annotations

from typing import Any

from .handlers import catalog_handlers, unknown_path_handlers
from .jobs.handlers import job_handlers
from .kernels.handlers import kernel_handlers
from .live.handlers import live_handlers

default_handlers: list[tuple[str, Any]] = [
    *catalog_handlers,
    *job_handlers,
    *kernel_handlers,
    *live_handlers,
    *unknown_path_handlers,  # last: what no route above matches
]
