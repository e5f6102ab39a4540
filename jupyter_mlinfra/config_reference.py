"""The README's configuration reference, generated from the traitlets' help text.

``python -m jupyter_mlinfra.config_reference`` rewrites the section of README.md between the
markers; a test fails when the README and the traitlets disagree, so the help text stays the
one source of truth.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from traitlets import TraitType
from traitlets.config import Configurable

from .app import MLInfraApp
from .backends.kubernetes.client import KubernetesCluster
from .backends.kubernetes.jobs import KubernetesJobs
from .backends.kubernetes.kernels import KubernetesKernels
from .backends.kubernetes.pod_config import KubernetesPods
from .backends.kubernetes.queue_config import KubernetesQueues

CONFIGURABLES: tuple[type[Configurable], ...] = (
    MLInfraApp,
    KubernetesCluster,
    KubernetesKernels,
    KubernetesJobs,
    KubernetesQueues,
    KubernetesPods,
)
"""Every class whose settings the reference lists, in this order."""

BEGIN = "<!-- begin config reference (generated: python -m jupyter_mlinfra.config_reference) -->"
END = "<!-- end config reference -->"


def _default(trait: TraitType) -> str:  # type: ignore[type-arg]
    if trait.name == "data_dir":
        return "`<jupyter data dir>/mlinfra`"
    value = trait.default()
    return f"`{value!r}`" if value not in ("", [], {}, set()) else "empty"


def _settings_of(cls: type[Configurable]) -> dict[str, TraitType]:  # type: ignore[type-arg]
    """The settings ``cls`` declares, with those of its mixins that are no Configurables
    (``MLInfraApp``'s ``SettingsTraits``), not those of the Configurables it extends."""
    owners = [c for c in cls.__mro__ if c is cls or not issubclass(c, Configurable)]
    traits = cls.class_traits(config=True)
    return {name: trait for name, trait in traits.items() if trait.this_class in owners}


def render() -> str:
    lines = [BEGIN, "", "| setting | type | default | what it does |", "| --- | --- | --- | --- |"]
    for cls in CONFIGURABLES:
        for name, trait in sorted(_settings_of(cls).items()):
            help_text = " ".join(inspect.cleandoc(trait.help).split()).replace("|", "\\|")
            kind = type(trait).__name__
            setting = f"c.{cls.__name__}.{name}"
            lines.append(f"| `{setting}` | {kind} | {_default(trait)} | {help_text} |")
    return "\n".join([*lines, "", END])


def update(readme: Path) -> bool:
    """Rewrite the generated section of ``readme``; True when it changed."""
    text = readme.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    new = text[:start] + render() + text[end:]
    readme.write_text(new)
    return new != text


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    print(f"{path}: {'updated' if update(path) else 'already up to date'}")
