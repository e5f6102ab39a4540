"""The settings of jobs' queueing on a cluster (``c.KubernetesQueues.*``): whether Kueue
queues jobs and which LocalQueue a job goes to.

They belong to the backend, not to the jobs service: the quota each flavor's ClusterQueue has
left (the flavor cards, ``GET capacity``) is read through the LocalQueue a job of the flavor
would go to, whichever jobs service the server runs. They were ``KubernetesJobs``'s before:
those names are still read, with a warning, so existing configurations keep working.
"""

from __future__ import annotations

import copy
from typing import Any

from traitlets import CaselessStrEnum, Dict, Unicode
from traitlets.config import Config, LoggingConfigurable

from .names import label_value

FORMER_SECTION = "KubernetesJobs"
"""Where these settings were, and are still read from when not set here."""
MOVED = ("kueue", "local_queue", "flavor_queues")


class KubernetesQueues(LoggingConfigurable):
    """Whether Kueue queues jobs, and the LocalQueue of each job (``c.KubernetesQueues``)."""

    kueue = CaselessStrEnum(
        ["auto", "on", "off", "required"],
        default_value="auto",
        config=True,
        help="""Whether Kueue queues jobs: 'auto' when the cluster serves Kueue's Workload API
        (v1beta2, else v1beta1), else jobs start at once outside any quota, which the server
        logs as a warning and GET capacity and whoami say ("queueing"); 'required' like auto,
        but without Kueue jobs are refused (503) rather than started; 'on' always (jobs wait
        suspended until Kueue admits them); 'off' never (jobs start at once and the
        cluster's scheduler decides). Formerly c.KubernetesJobs.kueue, still read.""",
    )
    local_queue = Unicode(
        "{queue}",
        config=True,
        help="""Kueue LocalQueue of a job, in the user's namespace. '{queue}' is the job's queue
        (default 'default'), '{flavor}' its flavor, '{username}' its owner. The flavor cards
        show the quota left in the ClusterQueue behind the LocalQueue of queue 'default'.
        Formerly c.KubernetesJobs.local_queue, still read.""",
    )
    flavor_queues = Dict(
        value_trait=Unicode(),
        config=True,
        help="""LocalQueue per flavor ({flavor: queue}), overriding local_queue: e.g. a
        flex-start flavor whose queue has a ProvisioningRequest admission check. Formerly
        c.KubernetesJobs.flavor_queues, still read.""",
    )

    def __init__(self, **kwargs: Any) -> None:
        config, former = _with_former_names(kwargs.get("config"))
        if config is not None:
            kwargs["config"] = config
        super().__init__(**kwargs)
        for name, taken in former.items():
            self.log.warning(
                "jupyter_mlinfra: c.%s.%s is now c.KubernetesQueues.%s%s",
                FORMER_SECTION,
                name,
                name,
                "; set that instead" if taken else ", which is set: the former is ignored",
            )

    def local_queue_of(self, flavor: str, queue: str, owner: str) -> str:
        """The LocalQueue of a job of ``flavor`` in ``queue`` by ``owner``, as
        ``flavor_queues`` or ``local_queue`` name it (settings, not user text, decide it)."""
        chosen = self.flavor_queues.get(flavor) or self.local_queue
        return label_value(
            chosen.replace("{queue}", queue)
            .replace("{flavor}", flavor)
            .replace("{username}", owner)
        )


def _with_former_names(config: Config | None) -> tuple[Config | None, dict[str, bool]]:
    """``config`` with the settings still set under their former section copied here where
    this section does not set them, and which were found (True: taken; False: ignored, the
    new name set too). The server's config is left as it is: other configurables share it."""
    former = dict.get(config, FORMER_SECTION) if config is not None else None
    if not isinstance(former, dict) or not any(name in former for name in MOVED):
        return config, {}
    assert config is not None
    current = dict.get(config, KubernetesQueues.__name__) or {}
    found = {name: name not in current for name in MOVED if name in former}
    merged = copy.deepcopy(config)
    for name, taken in found.items():
        if taken:
            merged[KubernetesQueues.__name__][name] = former[name]
    return merged, found
