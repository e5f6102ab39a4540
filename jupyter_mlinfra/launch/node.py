"""The per-node launcher of a job on Kubernetes: what each node's pod runs.

    python node.py SPEC_DIR RUN_DIR

A pod of a job is one node. This file, ``entry.py`` and ``contract.py`` travel in the job's
ConfigMap, mounted with the job description (``job.json``) and the pushed variables
(``push.json``, from a Secret) at ``SPEC_DIR``, so any image with a Python 3.8+ runs a job
unmodified. Like ``entry.py`` it imports only the standard library (and ``contract.py``, pure).

It starts ``NPROC_PER_NODE`` rank processes of ``entry.py RUN_DIR`` (``RUN_DIR`` a writable
emptyDir), each with the one rank-environment contract computed here, at run time, because the
node's rank is the pod's completion index, unknown when the pod template is written. Each
output line becomes ``[rank N] line`` on the pod's log, so every log of the job reads the same
whatever the number of ranks per pod. SIGTERM (pod deletion, a deadline) goes to every rank.
A script job comes with the script's text (``source`` in ``job.json``: the pod has none of the
submitter's files), written under ``RUN_DIR/script/`` before the ranks start and run from there.

On success, node 0 sends the pulled variables (``RUN_DIR/pull.pkl``) back by writing them into
the job's result Secret through the Kubernetes API, with a token that may patch that one Secret
and nothing else (``MLINFRA_RESULT_*``; see ``backends/kubernetes/workloads.py`` for why a
Secret). On failure the first failing rank's message goes to the termination message file, so
the job's reason names it.

Settings, all from the pod's environment: ``MLINFRA_NODE_RANK`` (the completion index),
``MLINFRA_NODES``, ``MLINFRA_PROCS_PER_NODE``, ``MLINFRA_FRAMEWORK``, ``MLINFRA_MASTER_ADDR``,
``MLINFRA_MASTER_PORT``, ``MLINFRA_NODE_ADDRS`` (comma-separated, by node rank),
``MLINFRA_THREADS`` (threads per node), ``MLINFRA_TERMINATION_LOG``; for the result:
``MLINFRA_RESULT_SECRET``, ``MLINFRA_RESULT_NAMESPACE``, ``MLINFRA_RESULT_API`` (empty: the
in-cluster ``KUBERNETES_SERVICE_HOST``), ``MLINFRA_RESULT_TOKEN_FILE``,
``MLINFRA_RESULT_CA_FILE``, ``MLINFRA_RESULT_DIR`` (a folder of the shared home volume for
results larger than a Secret holds, ``MLINFRA_RESULT_LIMIT`` bytes; empty: none).
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from typing import Any

MESSAGE_LIMIT = 4000
"""Kubernetes keeps at most 4096 bytes of a termination message."""


def _contract() -> Any:
    """``contract.py``, next to this file in the pod (and in the package)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "contract.py")
    spec = importlib.util.spec_from_file_location("mlinfra_contract", path)
    if spec is None or spec.loader is None:  # pragma: no cover - the ConfigMap ships it
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _number(name: str, default: int) -> int:
    text = os.environ.get(name, "")
    return int(text) if text.strip().isdigit() else default


def rank_envs() -> list[dict[str, str]]:
    """The environment of each rank this node starts, by local rank."""
    contract = _contract()
    nodes = _number("MLINFRA_NODES", 1)
    per_node = _number("MLINFRA_PROCS_PER_NODE", 1)
    node_rank = _number("MLINFRA_NODE_RANK", 0)
    addrs = [a for a in os.environ.get("MLINFRA_NODE_ADDRS", "").split(",") if a]
    envs = []
    for slot in contract.rank_slots(nodes, per_node):
        if slot.node_rank != node_rank:
            continue
        env = dict(os.environ)
        env.update(contract.thread_env(max(1, _number("MLINFRA_THREADS", 1) // per_node)))
        env.update(
            contract.rank_env(
                os.environ.get("MLINFRA_FRAMEWORK", "generic"),
                slot,
                nodes=nodes,
                procs_per_node=per_node,
                master_addr=os.environ["MLINFRA_MASTER_ADDR"],
                master_port=_number("MLINFRA_MASTER_PORT", 29500),
                node_addrs=addrs if len(addrs) == nodes else (),
            )
        )
        env["PYTHONUNBUFFERED"] = "1"
        envs.append(env)
    return envs


def _relay(stream: Any, prefix: bytes, lock: threading.Lock) -> None:
    out = sys.stdout.buffer
    for line in iter(stream.readline, b""):
        with lock:
            out.write(prefix + (line if line.endswith(b"\n") else line + b"\n"))
            out.flush()


def _failure(run_dir: str, rank: str, code: int) -> str:
    try:
        with open(os.path.join(run_dir, f"rank-{rank}.result.json"), encoding="utf-8") as f:
            traceback = str(json.load(f).get("traceback") or "")
    except (OSError, ValueError):
        traceback = ""
    text = f"rank {rank} exited with code {code}"
    return f"{text}:\n{traceback[-MESSAGE_LIMIT:]}" if traceback else text


def _write_termination(message: str) -> None:
    path = os.environ.get("MLINFRA_TERMINATION_LOG", "")
    if path:
        with contextlib.suppress(OSError), open(path, "w", encoding="utf-8") as file:
            file.write(message[-MESSAGE_LIMIT:])


SECRET_LIMIT = 1_000_000
"""The most pulled bytes sent in the result Secret: the API keeps a Secret's data under
1 MiB."""


def _through_volume(path: str, secret: str) -> tuple[dict[str, str], str]:
    """Pulled variables too large for a Secret: copied into ``MLINFRA_RESULT_DIR`` (a folder
    of the shared home volume, which the user's server sees too), the Secret then only saying
    so; or the reason they cannot come back."""
    size = os.path.getsize(path)
    folder = os.environ.get("MLINFRA_RESULT_DIR", "")
    if not folder:
        return {}, (
            f"cannot send the pulled variables: they take {size / 2**20:.1f} MiB, more than the "
            f"{SECRET_LIMIT / 2**20:.1f} MiB a Kubernetes Secret holds, and this job has no "
            "shared volume to pass them through (an admin sets c.KubernetesPods.home_volume); "
            "pull less, or write them to storage"
        )
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        target = os.path.join(folder, f"{secret}.pkl")
        partial = target + ".partial"
        with (
            open(path, "rb") as source,
            open(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as sink,
        ):
            shutil.copyfileobj(source, sink)
        os.replace(partial, target)
    except OSError as error:
        return {}, f"cannot write the pulled variables into {folder}: {error}"
    return {"pull.location": base64.b64encode(b"volume").decode()}, ""


def send_result(run_dir: str) -> str:
    """Write ``pull.pkl`` into the result Secret (or, larger than a Secret holds, into the
    shared volume, the Secret saying so); an error message, or ""."""
    secret = os.environ.get("MLINFRA_RESULT_SECRET", "")
    path = os.path.join(run_dir, "pull.pkl")
    if not secret or not os.path.exists(path):
        return ""
    if os.path.getsize(path) > _number("MLINFRA_RESULT_LIMIT", SECRET_LIMIT):
        data, problem = _through_volume(path, secret)
        if problem:
            return problem
    else:
        with open(path, "rb") as file:
            data = {"pull.pkl": base64.b64encode(file.read()).decode()}
    api = os.environ.get("MLINFRA_RESULT_API", "")
    if not api:
        host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        if not host:
            return "cannot send the pulled variables: no Kubernetes API address in this pod"
        api = f"https://{host}:{port}"
    namespace = os.environ.get("MLINFRA_RESULT_NAMESPACE", "default")
    token_file = os.environ.get("MLINFRA_RESULT_TOKEN_FILE", "")
    try:
        with open(token_file, encoding="utf-8") as file:
            token = file.read().strip()
    except OSError as error:
        return f"cannot send the pulled variables: no token ({error})"
    request = urllib.request.Request(
        f"{api.rstrip('/')}/api/v1/namespaces/{namespace}/secrets/{secret}",
        data=json.dumps({"data": data}).encode(),
        method="PATCH",
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/merge-patch+json",
        },
    )
    ca = os.environ.get("MLINFRA_RESULT_CA_FILE", "")
    context = ssl.create_default_context(cafile=ca) if ca and os.path.exists(ca) else None
    try:
        with urllib.request.urlopen(request, timeout=60, context=context):
            return ""
    except urllib.error.HTTPError as error:
        body = error.read()[:500].decode(errors="replace")
        return f"cannot send the pulled variables (HTTP {error.code}): {body}"
    except OSError as error:
        return f"cannot send the pulled variables: {error}"


def write_script(run_dir: str) -> None:
    """A script job came with its text (``source``; the pod has none of the submitter's
    files): write it into ``RUN_DIR/script/`` under the script's own name, which the ranks
    then run (``sys.argv[0]`` and tracebacks name it as the user did)."""
    path = os.path.join(run_dir, "job.json")
    with open(path, encoding="utf-8") as file:
        job = json.load(file)
    if not job.get("source"):
        return
    folder = os.path.join(run_dir, "script")
    os.makedirs(folder, exist_ok=True)
    script = os.path.join(folder, os.path.basename(job["script"]) or "script.py")
    with open(script, "w", encoding="utf-8") as file:
        file.write(job.pop("source"))
    job["script"] = script
    with open(path, "w", encoding="utf-8") as file:
        json.dump(job, file)


def run(spec_dir: str, run_dir: str) -> int:
    """Run this node's ranks; the first failing rank's exit code, or 0."""
    os.makedirs(run_dir, exist_ok=True)
    for name in ("job.json", "push.json"):
        if os.path.exists(os.path.join(spec_dir, name)):
            shutil.copyfile(os.path.join(spec_dir, name), os.path.join(run_dir, name))
    write_script(run_dir)
    entry = os.path.join(os.path.dirname(os.path.abspath(__file__)), "entry.py")
    lock = threading.Lock()
    ranks = []
    for env in rank_envs():
        process = subprocess.Popen(
            [sys.executable, entry, run_dir],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        relay = threading.Thread(
            target=_relay, args=(process.stdout, f"[rank {env['RANK']}] ".encode(), lock)
        )
        relay.start()
        ranks.append((env["RANK"], process, relay))

    def stop(signum: int, frame: Any) -> None:
        for _, process, _ in ranks:
            with contextlib.suppress(OSError):
                process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    failed = ""
    exit_code = 0
    for rank, process, relay in ranks:
        code = process.wait()
        relay.join()
        code = 128 - code if code < 0 else code
        if code and not exit_code:
            exit_code, failed = code, _failure(run_dir, rank, code)
    if not exit_code and _number("MLINFRA_NODE_RANK", 0) == 0:
        problem = send_result(run_dir)
        if problem:
            sys.stderr.write(f"mlinfra: {problem}\n")
            exit_code, failed = 1, problem
    if failed:
        _write_termination(failed)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.stderr.write("usage: python node.py SPEC_DIR RUN_DIR\n")
        return 2
    return run(argv[0], argv[1])


if __name__ == "__main__":
    sys.exit(main())
