"""What a server's one subscription to changing jobs offers its wiring (``app.py``)."""

from __future__ import annotations

from typing import Protocol


class Feed(Protocol):
    def start(self) -> None:
        """Start following in the background (the server's loop runs)."""
        ...

    async def stop(self) -> None: ...
