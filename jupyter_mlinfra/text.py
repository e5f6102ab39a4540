"""Plain text for people: tables, durations and ETAs, shared by the CLI, magics and widgets.

Each ``*_rows`` function turns an API answer into table rows, so a flavor or a job reads the same
in a terminal and in a notebook.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import catalog, jobs, kernels

Table = list[tuple[str, ...]]


def format_table(rows: Table) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def duration(seconds: float | None) -> str:
    """``42s``, ``3m05s``, ``2h10m``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def eta_text(eta: float | None, now: float | None = None) -> str:
    if eta is None:
        return "unknown"
    wait = eta - (time.time() if now is None else now)
    return "now" if wait <= 0 else f"in ~{duration(wait)}"


def flavor_rows(body: catalog.FlavorList) -> Table:
    rows: Table = [("NAME", "ACCELERATOR", "CPU", "MEMORY", "TYPE", "$/HOUR", "AVAILABLE NOW")]
    for f in body["flavors"]:
        accelerator = f["accelerator"]
        rows.append(
            (
                f["name"] + (" *" if f["name"] == body["default_flavor"] else ""),
                f"{accelerator['count']} × {accelerator['model'] or accelerator['kind']}"
                if accelerator
                else "-",
                f"{f['cpu']:g}",
                f["memory"],
                f["capacity_type"],
                "-" if f["price_per_hour"] is None else f"{f['price_per_hour']:.2f}",
                _available_now(f["availability"]),
            )
        )
    return rows


def _available_now(availability: catalog.Availability) -> str:
    if availability["available"]:
        return f"yes: {availability['summary']}"
    if availability["kernels_available"]:  # under Kueue: jobs wait for quota, kernels need none
        return f"kernels only: {availability['summary']}"
    return f"no: {availability['summary']}"


def environment_rows(body: catalog.EnvironmentList) -> Table:
    """KERNELS: how its kernels talk to the server; one that cannot start says why."""
    rows: Table = [("NAME", "FRAMEWORK", "LAUNCHER", "RUNS ON", "KERNELS", "DESCRIPTION")]
    for e in body["environments"]:
        default = " *" if e["name"] == body["default_environment"] else ""
        runs_on = e["image"] or e["python"] or "this server's Python"
        kernels = e["kernels"]
        if not kernels["available"]:
            transport, description = "cannot start", kernels["summary"]
        else:
            transport = "encrypted" if kernels["encrypted"] else "unencrypted"
            description = e["description"]
        rows.append(
            (e["name"] + default, e["framework"], e["launcher"], runs_on, transport, description)
        )
    return rows


def capacity_rows(body: catalog.Capacity) -> Table:
    rows: Table = [("RESOURCE", "FREE", "TOTAL", "DETAIL")]
    rows.append(("cpu", f"{body['cpu']['free']:g}", f"{body['cpu']['total']:g}", body["hostname"]))
    memory = body["memory"]
    rows.append(("memory", memory["free"], memory["total"], ""))
    for a in body["accelerators"]:
        free = ",".join(str(d["index"]) for d in a["devices"] if d["free"]) or "none"
        rows.append((f"{a['kind']} {a['model']}", str(a["free"]), str(a["total"]), f"free: {free}"))
    return rows


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else str(value)


def whoami_rows(body: catalog.Whoami) -> Table:
    limit = _limit
    quota, usage = body["quota"], body["usage"]
    return [
        ("FIELD", "VALUE"),
        ("user", body["user"] + (" (admin)" if body["admin"] else "")),
        ("groups", ", ".join(body["groups"]) or "-"),
        ("backend", body["backend"]),
        ("flavors", ", ".join(body["flavors"]) or "-"),
        ("priorities", ", ".join(body["priorities"]) or "-"),
        ("gpus", f"{usage['gpus']} of {limit(quota['max_gpus'])}"),
        ("running jobs", f"{usage['running_jobs']} of {limit(quota['max_running_jobs'])}"),
        ("queued jobs", f"{usage['queued_jobs']} of {limit(quota['max_queued_jobs'])}"),
        ("kernels", str(usage["kernels"])),
        *_isolation_rows(body.get("isolation")),
    ]


def _isolation_rows(isolation: catalog.Isolation | None) -> Table:
    """What the caller's jobs run as, and why; said loudly where other users' jobs can reach
    them."""
    if isolation is None:
        return []
    account = isolation["ranks_run_as"] or "- (refused)"
    if not isolation["isolated"]:
        account += " (NOT isolated from other users)"
    return [("jobs run as", account), ("isolation", isolation["reason"])]


def job_rows(page: jobs.JobList, now: float | None = None, *, owners: bool = False) -> Table:
    """One row per job; ``owners`` adds whose it is (an admin's view of everybody's)."""
    now = time.time() if now is None else now
    rows: Table = [("ID", "NAME", "STATE", "FLAVOR", "RANKS", "RUNTIME", "DETAIL")]
    if owners:
        rows = [(*rows[0][:2], "OWNER", *rows[0][2:])]
    for job in page["jobs"]:
        end = job["finished"] or now
        runtime = duration(end - job["started"]) if job["started"] else "-"
        detail = job["reason"]
        if job["state"] == "queued":
            detail = f"#{job['position']} · {job['reason']} · starts {eta_text(job['eta'], now)}"
        ranks = str(job["nodes"] * job["procs_per_node"])
        whose = (job["owner"],) if owners else ()
        rows.append(
            (job["id"], job["name"], *whose, job["state"], job["flavor"], ranks, runtime, detail)
        )
    return rows


def kernel_rows(listing: kernels.KernelList, now: float | None = None) -> Table:
    """One row per kernel: what it holds, how long it idles, and how it last died, if it did."""
    now = time.time() if now is None else now
    rows: Table = [("ID", "OWNER", "FLAVOR", "ENVIRONMENT", "STATE", "DEVICES", "IDLE", "DETAIL")]
    for kernel in listing["kernels"]:
        state: str = kernel["state"]
        detail = kernel["reason"]
        exit_ = kernel.get("last_exit")
        if state == "starting":
            state = f"starting: {kernel.get('phase') or '-'}"
            since = kernel["since"]
            if since is not None and detail:
                detail = f"{detail} ({duration(now - since)})"
        elif state == "running" and exit_:
            detail = f"restarted {duration(now - exit_['at'])} ago after: {exit_['reason']}"
        idle = kernel["last_activity"] if state == "running" else None
        rows.append(
            (
                kernel["id"],
                kernel["owner"],
                kernel["flavor"],
                kernel["environment"],
                state,
                ",".join(str(d) for d in kernel["devices"]) or "-",
                duration(now - idle) if idle else "-",
                detail,
            )
        )
    return rows


def _used(value: int, limit: int | None) -> str:
    return f"{value} of {_limit(limit)}"


def usage_rows(report: jobs.UsageReport) -> Table:
    """Each user's usage against their quota (``GET usage``)."""
    rows: Table = [("USER", "GROUPS", "GPUS", "RUNNING JOBS", "QUEUED JOBS", "KERNELS")]
    for entry in report["users"]:
        usage, quota = entry["usage"], entry["quota"]
        rows.append(
            (
                entry["user"] + (" (admin)" if entry["admin"] else ""),
                ", ".join(entry["groups"]) or "-",
                _used(usage["gpus"], quota["max_gpus"]),
                _used(usage["running_jobs"], quota["max_running_jobs"]),
                _used(usage["queued_jobs"], quota["max_queued_jobs"]),
                str(usage["kernels"]),
            )
        )
    return rows


def group_usage_rows(report: jobs.UsageReport) -> Table:
    """Each group's members' usage summed, against the quota each member gets from it."""
    rows: Table = [("GROUP", "MEMBERS", "GPUS", "RUNNING JOBS", "QUEUED JOBS", "PER MEMBER")]
    for entry in report["groups"]:
        usage, quota = entry["usage"], entry["member_quota"]
        per_member = (
            "-"
            if quota is None
            else f"gpus {_limit(quota['max_gpus'])}, "
            f"running_jobs {_limit(quota['max_running_jobs'])}, "
            f"queued_jobs {_limit(quota['max_queued_jobs'])}"
        )
        rows.append(
            (
                entry["group"],
                ", ".join(entry["members"]) or "-",
                str(usage["gpus"]),
                str(usage["running_jobs"]),
                str(usage["queued_jobs"]),
                per_member,
            )
        )
    return rows


def queue_rows(queue: jobs.Queue, now: float | None = None) -> Table:
    rows: Table = [("#", "ID", "NAME", "OWNER", "FLAVOR", "PRIORITY", "REASON", "STARTS")]
    for job in queue["jobs"]:
        basis = f" ({job['eta_basis']})" if job["eta_basis"] else ""
        rows.append(
            (
                str(job["position"] or "-"),
                job["id"],
                job["name"],
                job["owner"],
                job["flavor"],
                job["priority"],
                job["reason"],
                eta_text(job["eta"], now) + basis,
            )
        )
    return rows


def status_line(job: jobs.Job, now: float | None = None) -> str:
    """One line a person reads at a glance: state, then why and until when."""
    now = time.time() if now is None else now
    name = job["name"] or job["id"]
    state = job["state"]
    ranks = job["nodes"] * job["procs_per_node"]
    if state == "queued":
        parts = [f"{name}: queued"]
        if job["position"]:
            parts.append(f"position {job['position']}")
        if job["reason"]:
            parts.append(job["reason"])
        if job["eta"] is not None or job["eta_basis"]:
            basis = f" ({job['eta_basis']})" if job["eta_basis"] else ""
            parts.append(f"starts {eta_text(job['eta'], now)}{basis}")
        return " · ".join(parts)
    if state in ("admitted", "starting"):
        return f"{name}: {state} on {job['flavor']}"
    if state == "running":
        return f"{name}: running {ranks} rank{'s' * (ranks != 1)} on {job['flavor']} · " + duration(
            now - (job["started"] or now)
        )
    took = ""
    if job["started"] and job["finished"]:
        took = f" in {duration(job['finished'] - job['started'])}"
    exit_code = f" (exit {job['exit_code']})" if state == "failed" and job["exit_code"] else ""
    shown = job["reason"] and job["reason"] != state and state != "succeeded"
    reason = f": {job['reason']}" if shown else ""
    return f"{name}: {state}{took}{exit_code}{reason}"


def job_history(job: jobs.Job, events: list[jobs.Event]) -> str:
    """A job's status line, its events, and the failing rank's traceback."""
    lines = [status_line(job)]
    for event in events:
        when = time.strftime("%H:%M:%S", time.localtime(event["time"]))
        # a reason that only repeats the condition ("Admitted") says nothing more
        reason = "" if event["reason"] == event["condition"] else event["reason"]
        said = "  ".join(part for part in (reason, event["message"]) if part)
        lines.append(f"  {when}  {event['condition']:<13} {said}".rstrip())
    if job["message"]:
        lines.append(job["message"].rstrip())
    return "\n".join(lines)


_STOPPED = re.compile(r"^mlinfra: rank \d+ stopped by (?P<what>\S+)")
"""The first line of what a rank prints when it is stopped (``launch/entry.py``)."""
_RANK_STATES = {
    "running": "is running",
    "succeeded": "succeeded",
    "failed": "stopped when the job failed",
    "cancelled": "was cancelled",
    "preempted": "was preempted",
}


def rank_sentence(rank: int, state: str, lines: list[str]) -> str:
    """What one rank is doing or how it ended, as a sentence, from the job's state and the
    rank's last lines of output: ``rank 1 stopped by SIGTERM while in `time.sleep(1)```,
    ``rank 0 failed with ValueError: boom``, ``rank 0 is running; last printed `step 3```."""
    printed = [line.rstrip() for line in lines if line.strip()]
    for index in range(len(printed) - 1, -1, -1):
        stopped = _STOPPED.match(printed[index])
        if stopped:
            # the frames follow: "  File ..., line 3, in <module>" then "    the code"
            code = [line.strip() for line in printed[index + 1 :] if line.startswith("    ")]
            where = f" while in `{code[-1]}`" if code else ""
            return f"rank {rank} stopped by {stopped['what']}{where}"
    if "Traceback (most recent call last):" in printed:
        return f"rank {rank} failed with {printed[-1].strip()}"
    doing = _RANK_STATES.get(state, state)
    return f"rank {rank} {doing}" + (f"; last printed `{printed[-1].strip()}`" if printed else "")
