"""Live updates: what changes in jobs and kernels, pushed to every open browser tab and
following client.

One subscription per server to where jobs change (the local agent's change stream,
``agent_feed.py``, or the cluster's watches, ``backends/kubernetes/job_feed.py``), fanned out
to the tabs (``tabs.py``), each over one websocket (``handlers.py``) that carries only what
its user may see.
"""
