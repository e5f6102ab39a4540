"""jupyter-mlinfra kernel launcher: runs an IPython kernel inside a Deep Learning container.

One file, standard library only, run by the image's own Python (``python3 launcher.py``), so
stock images work unmodified: the pod's init container copies this file (and, for images
without ipykernel, a site directory per Python version) into a shared volume.

It writes the kernel's connection file from the pod's settings (the server chose the ports and
the key up front, so nothing dials back), prints an environment report, then keeps one
ipykernel process running on the pod IP:

* the kernel's five ports are ``MLINFRA_KERNEL_PORT`` .. +4; the launcher's own control port
  is +5. Its commands (one line each, signed with the kernel's key) are ``status`` (is the
  kernel process alive, its exit code) and ``restart`` (wait briefly for the kernel to exit,
  kill it if it does not, start a fresh one on the same ports: a restart in seconds, with no
  new pod, no image pull and the same GPUs);
* a kernel process that exits is not restarted on its own: the server sees it through
  ``status`` and decides, as jupyter_client does for local kernels;
* SIGTERM (pod deletion) is forwarded to the kernel, then the launcher exits;
* the kernel pod expires at the time in ``MLINFRA_EXPIRES_FILE`` (a downward-API file of the
  pod's expiry annotation, renewed by the server while it uses the kernel), so a kernel pod
  dies even when no server is left to delete it;
* a failure is written to the termination log (``terminationMessagePath``), where the server
  reads the reason;
* with ``MLINFRA_KERNEL_ENCRYPTION`` ("auto" or "required": the server's transport encryption),
  the kernel's CurveZMQ keys are read from ``curve_publickey`` and ``curve_secretkey`` next to
  the key file (the same Secret) and written into the connection file, so ipykernel serves
  encrypted, once the kernel's ipykernel (the image's, or the site directory's) is checked to
  take them; if it does not, "required" fails the pod with the reason and "auto" runs the
  kernel unencrypted. ``status`` answers which (``encryption``: "curve" or "none", and
  ``unencrypted``: why not), and the server connects accordingly.

Settings (environment): ``MLINFRA_KERNEL_IP`` (default 0.0.0.0), ``MLINFRA_KERNEL_PORT``
(default 50000), ``MLINFRA_KERNEL_KEY_FILE`` (the key, from the pod's Secret),
``MLINFRA_KERNEL_ENCRYPTION``, ``MLINFRA_RUNTIME_DIR`` (where the connection file goes),
``MLINFRA_SITE`` (site directories ``py3.X`` used when the image lacks ipykernel),
``MLINFRA_TERMINATION_LOG`` (default /dev/termination-log), ``MLINFRA_EXPIRES_FILE``.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import importlib.metadata
import importlib.util
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

CHANNELS = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
CONTROL_OFFSET = len(CHANNELS)
SIGNATURE_SCHEME = "hmac-sha256"
MAX_CLOCK_SKEW = 300
"""Seconds a signed command stays valid: replaying an old ``restart`` does nothing."""
EXIT_GRACE = 5.0
"""Seconds a kernel gets to exit by itself (after a shutdown request) before it is killed."""
EXPIRY_CHECK = 15.0
FRAMEWORKS = ("torch", "tensorflow", "jax", "jaxlib", "numpy", "ipykernel")
CURVE_FILES = ("curve_publickey", "curve_secretkey")
CURVE_CHECK = """
import ipykernel, zmq
from ipykernel.kernelspec import get_kernel_dict
schemes = get_kernel_dict().get("metadata", {}).get("supported_encryption") or []
if "curve" not in ([schemes] if isinstance(schemes, str) else schemes):
    print(f"ipykernel {ipykernel.__version__} here does not support CurveZMQ transport"
          " encryption (ipykernel 7.3 and later do)")
elif not zmq.has("curve"):
    print("pyzmq here has no CURVE support (libzmq built without libsodium)")
"""
"""Run with the kernel's Python and PYTHONPATH: prints why its ipykernel cannot take CurveZMQ
keys (an old one would ignore them and serve unencrypted), nothing when it can."""


class LaunchError(Exception):
    """Why the kernel cannot run; becomes the container's termination message."""


def sign(key: bytes, command: str, stamp: str) -> str:
    return hmac.new(key, f"{command} {stamp}".encode(), hashlib.sha256).hexdigest()


def setting(name: str, default: str = "") -> str:
    return os.environ.get(f"MLINFRA_{name}", default)


def report() -> list[str]:
    """What the kernel will see: interpreter, devices, driver, framework versions."""
    lines = [f"python {sys.version.split()[0]} at {sys.executable}"]
    for variable in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
                     "TPU_VISIBLE_CHIPS"):  # fmt: skip
        if variable in os.environ:
            lines.append(f"{variable}={os.environ[variable]}")
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            found = subprocess.run(
                [smi, "--query-gpu=index,name,driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20, check=False,
            )  # fmt: skip
            lines += [f"gpu {line.strip()}" for line in found.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.TimeoutExpired) as error:
            lines.append(f"nvidia-smi failed: {error}")
    for name in FRAMEWORKS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            lines.append(f"{name} {importlib.metadata.version(name)}")
    return lines


def kernel_path() -> str:
    """PYTHONPATH for the kernel: the image's own, plus our site directory for this Python
    when the image has no ipykernel."""
    current = os.environ.get("PYTHONPATH", "")
    if importlib.util.find_spec("ipykernel") is not None:
        return current
    version = f"py{sys.version_info.major}.{sys.version_info.minor}"
    site = Path(setting("SITE", str(Path(__file__).parent / "site"))) / version
    if not site.is_dir():
        raise LaunchError(
            f"ipykernel is not installed for {sys.executable} (Python {sys.version.split()[0]})"
            f" and the init container brought no site directory {site}"
        )
    return os.pathsep.join(p for p in (str(site), current) if p)


def connection(key: bytes) -> dict[str, object]:
    base = int(setting("KERNEL_PORT", "50000"))
    info: dict[str, object] = {name: base + i for i, name in enumerate(CHANNELS)}
    info.update(
        ip=setting("KERNEL_IP", "0.0.0.0"),
        key=key.decode(),
        transport="tcp",
        signature_scheme=SIGNATURE_SCHEME,
        kernel_name="",
    )
    return info


def curve_refusal(env: dict[str, str]) -> str:
    """Why the kernel's ipykernel cannot serve with CurveZMQ keys; empty when it can."""
    try:
        checked = subprocess.run(
            [sys.executable, "-c", CURVE_CHECK],
            env=env, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"its ipykernel could not be checked: {error}"
    if checked.returncode != 0:
        last = (checked.stderr.strip().splitlines() or ["no output"])[-1]
        return f"its ipykernel could not be checked: {last}"
    return checked.stdout.strip()


Transport = dict[str, object]


def encryption(
    policy: str, key_file: Path, env: dict[str, str]
) -> tuple[dict[str, str], Transport]:
    """The connection file's CurveZMQ keys under ``policy`` ("", "auto", "required"), and what
    ``status`` says of the kernel's transport."""
    if not policy:
        return {}, {"encryption": "none", "unencrypted": "transport encryption is off"}
    try:
        keys = {name: (key_file.parent / name).read_text().strip() for name in CURVE_FILES}
    except OSError as error:
        raise LaunchError(f"cannot read the kernel's CurveZMQ keys: {error}") from None
    refusal = curve_refusal(env)
    if not refusal:
        return keys, {"encryption": "curve"}
    if policy == "required":
        raise LaunchError(f"transport encryption is required but {refusal}")
    print(f"mlinfra: the kernel runs without transport encryption: {refusal}", flush=True)
    return {}, {"encryption": "none", "unencrypted": refusal}


def write_private(path: Path, text: str) -> None:
    """Write ``path`` readable by this user only, whole or not at all (a reader never sees it
    half written: ipykernel reads the connection file as soon as it exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    os.replace(partial, path)


def expiry() -> float | None:
    """The pod's expiry (epoch seconds) from the downward-API file; None: never."""
    path = setting("EXPIRES_FILE")
    try:
        text = Path(path).read_text().strip() if path else ""
        return float(text) if text else None
    except (OSError, ValueError):
        return None


class Kernel:
    """One ipykernel process at a time, on the same connection file."""

    def __init__(self, connection_file: Path, env: dict[str, str], transport: Transport) -> None:
        self.connection_file = connection_file
        self.env = env
        self.transport = transport
        """``encryption`` ("curve" or "none") and, when none, ``unencrypted``: why."""
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr_tail: deque[str] = deque(maxlen=20)

    def start(self) -> None:
        command = [sys.executable, "-m", "ipykernel_launcher", "-f", str(self.connection_file)]
        self.process = subprocess.Popen(command, env=self.env, stderr=subprocess.PIPE)
        threading.Thread(target=self._relay, args=(self.process,), daemon=True).start()
        print(f"mlinfra: kernel started, pid {self.process.pid}", flush=True)

    def _relay(self, process: subprocess.Popen[bytes]) -> None:
        """Copy the kernel's stderr to ours (the container log), keeping the last lines."""
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode(errors="replace")
            sys.stderr.write(line)
            sys.stderr.flush()
            self.stderr_tail.append(line.rstrip())

    def status(self) -> dict[str, object]:
        if self.process is None:
            return {"kernel": "none", **self.transport}
        code = self.process.poll()
        if code is None:
            return {"kernel": "running", "pid": self.process.pid, **self.transport}
        return {"kernel": "exited", "code": code, **self.transport}

    def stop(self, grace: float) -> None:
        """Let the kernel exit within ``grace`` seconds (it may be shutting down), else kill."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            self.process.wait(grace)
            return
        except subprocess.TimeoutExpired:
            pass
        self.process.terminate()
        try:
            self.process.wait(2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def restart(self) -> dict[str, object]:
        self.stop(EXIT_GRACE)
        self.start()
        return {"restarted": True, **self.status()}


class Control:
    """The launcher's control port: signed one-line commands, one JSON line back."""

    def __init__(self, key: bytes, ip: str, port: int, kernel: Kernel) -> None:
        self.key = key
        self.kernel = kernel
        self.server = socket.create_server((ip, port), reuse_port=False)
        self.server.setblocking(False)

    def answer(self, line: str) -> dict[str, object]:
        parts = line.split()
        if len(parts) != 3:
            return {"error": "expected: <command> <time> <signature>"}
        command, stamp, signature = parts
        if not hmac.compare_digest(sign(self.key, command, stamp), signature):
            return {"error": "bad signature"}
        try:
            if abs(time.time() - float(stamp)) > MAX_CLOCK_SKEW:
                return {"error": "stale command"}
        except ValueError:
            return {"error": "bad time"}
        if command == "status":
            return self.kernel.status()
        if command == "restart":
            return self.kernel.restart()
        return {"error": f"unknown command {command!r}"}

    def serve_one(self) -> None:
        try:
            client, _ = self.server.accept()
        except BlockingIOError:
            return
        with client:
            client.settimeout(5)
            try:
                line = client.makefile("r").readline(4096)
                client.sendall((json.dumps(self.answer(line)) + "\n").encode())
            except OSError as error:
                print(f"mlinfra: control connection failed: {error}", file=sys.stderr)


def run() -> int:
    for line in report():
        print(f"mlinfra: {line}", flush=True)
    key_file = setting("KERNEL_KEY_FILE")
    if not key_file:
        raise LaunchError("MLINFRA_KERNEL_KEY_FILE is not set: the pod has no kernel key")
    try:
        key = Path(key_file).read_bytes().strip()
    except OSError as error:
        raise LaunchError(f"cannot read the kernel key: {error}") from None
    env = dict(os.environ, PYTHONPATH=kernel_path())
    runtime = Path(setting("RUNTIME_DIR", "/tmp/mlinfra"))
    home = Path(env.get("HOME", "/"))
    if not os.access(home, os.W_OK):  # an image's HOME that its non-root user cannot write
        env["HOME"] = str(runtime / "home")
        Path(env["HOME"]).mkdir(parents=True, exist_ok=True)
    info = connection(key)
    keys, transport = encryption(setting("KERNEL_ENCRYPTION"), Path(key_file), env)
    connection_file = runtime / "kernel.json"
    write_private(connection_file, json.dumps({**info, **keys}))
    kernel = Kernel(connection_file, env, transport)
    try:
        control = Control(key, str(info["ip"]), int(str(info["shell_port"])) + CONTROL_OFFSET,
                          kernel)  # fmt: skip
    except OSError as error:
        raise LaunchError(f"cannot listen on the control port: {error}") from None

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    kernel.start()
    selector = selectors.DefaultSelector()
    selector.register(control.server, selectors.EVENT_READ)
    next_expiry_check = 0.0
    while not stopping.is_set():
        for _ in selector.select(timeout=0.5):
            control.serve_one()
        if time.monotonic() >= next_expiry_check:
            next_expiry_check = time.monotonic() + EXPIRY_CHECK
            expires = expiry()
            if expires is not None and time.time() > expires:
                kernel.stop(0)
                raise LaunchError("kernel pod expired: no server renewed it")
    print("mlinfra: stopping the kernel (SIGTERM)", flush=True)
    if kernel.process is not None and kernel.process.poll() is None:
        kernel.process.terminate()
    kernel.stop(EXIT_GRACE)
    return 0


def main() -> int:
    try:
        return run()
    except LaunchError as error:
        message = str(error)
        print(f"mlinfra: {message}", file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            Path(setting("TERMINATION_LOG", "/dev/termination-log")).write_text(message)
        return 1


if __name__ == "__main__":
    sys.exit(main())
