"""Pin this process to some CPUs, then become the given command.

    python pin.py 0,1,4 -- python -m ipykernel_launcher -f kernel.json

Kernel provisioners run it with the environment's own Python, which may not have
jupyter_mlinfra installed: standard library only, nothing newer than Python 3.8. ``exec``
keeps the process id, so the pid bound to a lease is the kernel's own, and the affinity is
inherited by the kernel and everything it starts.
"""

from __future__ import annotations

import os
import sys


def parse(argv: list[str]) -> tuple[set[int], list[str]]:
    """``(cpus, command)`` from ``CPUS -- COMMAND ...``; CPUS is comma-separated, may be empty."""
    if len(argv) < 3 or argv[1] != "--":
        raise SystemExit("usage: pin.py CPU[,CPU...] -- COMMAND [ARGUMENT...]")
    try:
        cpus = {int(cpu) for cpu in argv[0].split(",") if cpu.strip()}
    except ValueError:
        raise SystemExit(
            f"pin.py: CPUS must be comma-separated CPU numbers, got {argv[0]!r}"
        ) from None
    return cpus, argv[2:]


def main(argv: list[str] | None = None) -> None:
    cpus, command = parse(sys.argv[1:] if argv is None else argv)
    if cpus:
        setaffinity = getattr(os, "sched_setaffinity", None)
        if setaffinity is None:  # pragma: no cover - not Linux
            print("mlinfra: CPU pinning is not supported on this platform", file=sys.stderr)
        else:
            try:
                setaffinity(0, cpus)
            except OSError as error:
                raise SystemExit(f"mlinfra: cannot pin to CPUs {sorted(cpus)}: {error}") from None
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
