"""A server's one subscription to where jobs change: a task that runs from the first tab
until the server stops (``agent_feed.py`` for the local agent, ``job_feed.py`` for a cluster)."""

from __future__ import annotations

from ..background import Background


class Feed(Background):
    """Tells the server's tabs (``tabs.Tabs``) what changed, for as long as it runs."""
