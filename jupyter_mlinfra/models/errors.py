"""The wire model of every error answer."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from typing_extensions import TypedDict


class Error(TypedDict):
    """A 4xx or 5xx: the message is for people, ``field`` names the offending field or query
    parameter (null when the request as a whole is at fault)."""

    message: str
    field: Annotated[str | None, Field(description="The offending field, if one is.")]
