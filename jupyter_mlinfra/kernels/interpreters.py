"""What an environment's interpreter supports as a kernel, asked of its own ipykernel once.

A generated kernelspec must declare what its kernel really does: jupyter_client provisions
CurveZMQ keys (``MappingKernelManager.transport_encryption``), and lets a kernel start at all
under ``"required"``, only when the spec's ``metadata.supported_encryption`` names ``curve``.
So nothing is assumed from a version number: the interpreter, run with the environment's
variables as its kernel will be, is asked for the kernelspec its ipykernel would install
(``ipykernel.kernelspec.get_kernel_dict``) and whether its pyzmq has CURVE (libzmq built
with libsodium). The answer is kept for the server's life (``Interpreters``), found ahead at
server start and otherwise on first use; a restart asks again.

A pod's interpreter is in its image, out of this server's reach: there the kernel launcher
checks the image's ipykernel at each start (``POD_LAUNCHER``).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..models import catalog as wire

PROBE_TIMEOUT = 60.0
PROBE = """
import json
try:
    from importlib.metadata import version
    import zmq
    from ipykernel.kernelspec import get_kernel_dict
    spec = get_kernel_dict()
    found = {"ipykernel": version("ipykernel"), "curve": zmq.has("curve"),
             "protocol_version": spec.get("kernel_protocol_version", ""),
             "encryption": spec.get("metadata", {}).get("supported_encryption", [])}
except Exception as error:
    found = {"problem": f"cannot load ipykernel: {error!r}"}
print(json.dumps(found))
"""
"""Run as ``python -c``; prints one JSON line, also when ipykernel is missing."""


@dataclass(frozen=True)
class KernelSupport:
    """What kernels of one interpreter support; ``problem`` says why a probe told nothing."""

    protocol_version: str = ""
    encryption: tuple[str, ...] = ()
    """Transport encryption schemes the kernel takes, as kernelspecs name them ("curve")."""
    why_unencrypted: str = ""
    problem: str = ""
    checked_at_start: bool = False
    """Not asked ahead: the kernel checks its own ipykernel when it starts (pods)."""

    @property
    def curve(self) -> bool:
        return "curve" in self.encryption


POD_LAUNCHER = KernelSupport(encryption=("curve",), checked_at_start=True)
"""Kernels in pods: the launcher takes CurveZMQ keys, checks the image's ipykernel in the pod
and either runs it encrypted or fails (``required``) or runs it without (``auto``), saying why;
the protocol version is the image's, unknown here."""


def parse_probe(python: str, output: str) -> KernelSupport:
    """The support the probe's ``output`` reports for ``python``."""
    try:
        found: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return KernelSupport(problem=f"{python} did not answer the ipykernel probe: {output!r}")
    if "problem" in found:
        return KernelSupport(problem=f"{python}: {found['problem']}")
    declared = found.get("encryption") or []
    schemes = [declared] if isinstance(declared, str) else list(declared)
    encryption = tuple(sorted({str(s).strip().lower() for s in schemes}))
    why = ""
    if "curve" not in encryption:
        why = (
            f"ipykernel {found.get('ipykernel')} of {python} does not support CurveZMQ"
            " transport encryption (ipykernel 7.3 and later do)"
        )
    elif not found.get("curve"):
        encryption = tuple(s for s in encryption if s != "curve")
        why = f"pyzmq of {python} has no CURVE support (libzmq built without libsodium)"
    return KernelSupport(str(found.get("protocol_version") or ""), encryption, why)


Key = tuple[str, tuple[tuple[str, str], ...]]


class Interpreters:
    """Probe results per interpreter and environment variables, for the server's life. The
    kernel spec manager asks synchronously (it is synchronous), REST handlers asynchronously;
    both share the answers. Safe from any thread: a repeated probe only costs its time."""

    def __init__(self, timeout: float = PROBE_TIMEOUT) -> None:
        self.timeout = timeout
        self._known: dict[Key, KernelSupport] = {}

    @staticmethod
    def _key(python: str, env: Mapping[str, str]) -> Key:
        return python, tuple(sorted(env.items()))

    def known(self, python: str, env: Mapping[str, str]) -> KernelSupport | None:
        return self._known.get(self._key(python, env))

    def support(self, python: str, env: Mapping[str, str]) -> KernelSupport:
        """``python``'s support, probing it now (blocking) if it never was."""
        found = self.known(python, env)
        if found is not None:
            return found
        try:
            done = subprocess.run(
                [python, "-c", PROBE],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=self.timeout,
                check=False,
            )
            found = parse_probe(python, done.stdout or done.stderr)
        except (OSError, subprocess.TimeoutExpired) as error:
            found = KernelSupport(problem=f"cannot run {python}: {error}")
        self._known[self._key(python, env)] = found
        return found

    async def asupport(self, python: str, env: Mapping[str, str]) -> KernelSupport:
        """``python``'s support, probing it without blocking the event loop if it never was."""
        found = self.known(python, env)
        if found is not None:
            return found
        try:
            process = await asyncio.create_subprocess_exec(
                python,
                "-c",
                PROBE,
                env={**os.environ, **env},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as error:
            found = KernelSupport(problem=f"cannot run {python}: {error}")
        else:
            try:
                out, err = await asyncio.wait_for(process.communicate(), self.timeout)
                found = parse_probe(python, (out or err).decode(errors="replace"))
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()
                found = KernelSupport(problem=f"{python} did not answer in {self.timeout:g}s")
        self._known[self._key(python, env)] = found
        return found

    async def probe_all(self, targets: Iterable[tuple[str, Mapping[str, str]]]) -> None:
        """Probe ``(python, env)`` pairs at once (at server start), so that listings wait for
        none of them."""
        unique = {self._key(p, e): (p, e) for p, e in targets}
        await asyncio.gather(*(self.asupport(p, e) for p, e in unique.values()))


@dataclass(frozen=True)
class KernelTransport:
    """How an environment's kernels talk to this server, for ``GET environments``: whether
    they can start under the server's policy, whether encrypted, and why not."""

    available: bool
    encrypted: bool
    summary: str

    def to_json(self) -> wire.KernelTransport:
        return {"available": self.available, "encrypted": self.encrypted, "summary": self.summary}


POLICIES = ("disabled", "auto", "required")
"""``MappingKernelManager.transport_encryption``'s values."""


def transport_of(policy: str, support: KernelSupport) -> KernelTransport:
    """What ``policy`` (``MappingKernelManager.transport_encryption``) makes of kernels with
    ``support``: jupyter_client encrypts where the kernelspec declares CURVE, and under
    "required" refuses to start the others."""
    if policy == "disabled":
        return KernelTransport(True, False, "transport encryption is off on this server")
    if support.curve:
        checked = " (the image's ipykernel is checked as each pod starts)"
        summary = "kernels run with CurveZMQ transport encryption"
        return KernelTransport(True, True, summary + (checked if support.checked_at_start else ""))
    why = support.why_unencrypted or support.problem
    if policy == "required":
        return KernelTransport(
            False,
            False,
            f"kernels cannot start: this server requires transport encryption and {why}",
        )
    return KernelTransport(True, False, f"kernels run without transport encryption: {why}")
