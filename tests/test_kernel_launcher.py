"""The pod kernel launcher (kernels/launcher.py) run as a real process, as a kernel pod's
main container runs it: a kernel on fixed ports, restarted in place, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from jupyter_client.asynchronous import AsyncKernelClient

from jupyter_mlinfra.backends.kubernetes.kernel_pod import pod_ports
from jupyter_mlinfra.backends.kubernetes.launcher_control import LauncherUnreachable, command

from .lab_server import patient_heartbeat

LAUNCHER = Path(__file__).parent.parent / "kernels" / "launcher.py"


def free_port_block(size: int = 6) -> int:
    """A first port with ``size`` free ports after it (checked, not guaranteed)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base: int = probe.getsockname()[1]
        if base + size > 65535:
            continue
        try:
            for port in range(base, base + size):
                with socket.socket() as taken:
                    taken.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no block of free ports")


class Pod:
    def __init__(self, tmp: Path, key: bytes, port: int, process: subprocess.Popen[str]) -> None:
        self.tmp, self.key, self.port, self.process = tmp, key, port, process

    async def control(self, name: str) -> dict[str, object]:
        return await command("127.0.0.1", pod_ports(self.port)[-1], self.key, name, 30)

    def client(self) -> AsyncKernelClient:
        info = json.loads((self.tmp / "run" / "kernel.json").read_text())
        client = AsyncKernelClient()
        client.load_connection_info(info)
        patient_heartbeat(client)  # the kernel restarts under it
        client.start_channels()
        return client


@pytest.fixture
def pod_env() -> dict[str, str]:
    """Variables of the pod beyond the usual ones; tests parametrize it."""
    return {}


@pytest.fixture
def pod(tmp_path: Path, pod_env: dict[str, str]) -> Iterator[Pod]:
    """A launcher as a pod runs it; its Secret's files (the key, and CurveZMQ keys when the pod
    is told to encrypt) in ``tmp_path``."""
    key = secrets.token_hex(32).encode()
    (tmp_path / "key").write_bytes(key)
    if "MLINFRA_KERNEL_ENCRYPTION" in pod_env:
        public, secret = zmq.curve_keypair()
        (tmp_path / "curve_publickey").write_bytes(public)
        (tmp_path / "curve_secretkey").write_bytes(secret)
    port = free_port_block()
    env = {
        **os.environ,
        "MLINFRA_KERNEL_IP": "127.0.0.1",
        "MLINFRA_KERNEL_PORT": str(port),
        "MLINFRA_KERNEL_KEY_FILE": str(tmp_path / "key"),
        "MLINFRA_RUNTIME_DIR": str(tmp_path / "run"),
        "MLINFRA_TERMINATION_LOG": str(tmp_path / "termination-log"),
        "MLINFRA_FLAVOR": "a100x1",
        **pod_env,
    }
    process = subprocess.Popen(
        [sys.executable, str(LAUNCHER)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        yield Pod(tmp_path, key, port, process)
    finally:
        if process.poll() is None:
            # SIGTERM, as a pod deletion: the launcher stops its kernel, which a SIGKILL of
            # the launcher alone would leave running after the test
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


async def ready(pod: Pod) -> AsyncKernelClient:
    # until the launcher has written the whole connection file: it opens it, then writes it
    deadline = time.monotonic() + 60
    connection = pod.tmp / "run" / "kernel.json"
    while not (connection.exists() and connection.read_text().strip().endswith("}")):
        assert pod.process.poll() is None, f"the launcher exited with {pod.process.returncode}"
        assert time.monotonic() < deadline, "the launcher wrote no connection file"
        await asyncio.sleep(0.05)
    client = pod.client()
    await client.wait_for_ready(timeout=60)
    return client


async def run(client: AsyncKernelClient, code: str) -> str:
    """What ``code`` prints in the kernel."""
    printed: list[str] = []

    def collect(message: dict[str, Any]) -> None:
        if message["header"]["msg_type"] == "stream":
            printed.append(message["content"]["text"])

    reply = await client.execute_interactive(code, timeout=60, output_hook=collect)
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(printed)


async def test_kernel_runs_restarts_in_place_and_stops(pod: Pod) -> None:
    client = await ready(pod)
    try:
        printed = await run(
            client, "import os; x = 1; print(os.environ['MLINFRA_FLAVOR'], os.getpid())"
        )
        flavor, first_pid = printed.split()
        assert flavor == "a100x1"
        status = await pod.control("status")
        unencrypted = {"encryption": "none", "unencrypted": "transport encryption is off"}
        assert status == {"kernel": "running", "pid": int(first_pid), **unencrypted}

        # a restart: the kernel is asked to shut down, then the launcher starts a new one
        client.shutdown(restart=True)
        answer = await pod.control("restart")
        assert answer["restarted"] is True and answer["pid"] != int(first_pid)
        await client.wait_for_ready(timeout=60)
        assert await run(client, "print('x' in dir())") == "False\n"  # fresh kernel, same ports
    finally:
        client.stop_channels()
    pod.process.send_signal(signal.SIGTERM)
    assert pod.process.wait(30) == 0
    assert pod.process.stdout is not None
    log = pod.process.stdout.read()
    assert "mlinfra: python " in log and "mlinfra: stopping the kernel (SIGTERM)" in log


async def test_unsigned_or_wrong_key_commands_are_refused(pod: Pod) -> None:
    client = await ready(pod)
    client.stop_channels()
    with pytest.raises(LauncherUnreachable, match="bad signature"):
        await command("127.0.0.1", pod_ports(pod.port)[-1], b"not-the-key", "restart", 30)
    assert (await pod.control("status"))["kernel"] == "running"


@pytest.mark.parametrize("pod_env", [{"MLINFRA_KERNEL_ENCRYPTION": "required"}])
async def test_kernel_serves_encrypted_with_the_secrets_curve_keys(pod: Pod) -> None:
    client = await ready(pod)
    try:
        info = json.loads((pod.tmp / "run" / "kernel.json").read_text())
        assert info["curve_secretkey"] == (pod.tmp / "curve_secretkey").read_text()
        assert info["curve_publickey"] == (pod.tmp / "curve_publickey").read_text()
        assert await run(client, "print(6 * 7)") == "42\n"
        assert (await pod.control("status"))["encryption"] == "curve"
    finally:
        client.stop_channels()


@pytest.mark.parametrize("policy", ["auto", "required"])
def test_an_ipykernel_without_curve_runs_unencrypted_only_under_auto(
    tmp_path: Path, old_ipykernel: str, policy: str
) -> None:
    """ipykernel 7.2 on the PYTHONPATH stands for an image whose ipykernel cannot encrypt: it
    would ignore the keys and serve in clear text, so the launcher never gives them to it."""
    (tmp_path / "key").write_text("k")
    public, secret = zmq.curve_keypair()
    (tmp_path / "curve_publickey").write_bytes(public)
    (tmp_path / "curve_secretkey").write_bytes(secret)
    port = free_port_block()
    env = {
        **os.environ,
        "PYTHONPATH": old_ipykernel,
        "MLINFRA_KERNEL_IP": "127.0.0.1",
        "MLINFRA_KERNEL_PORT": str(port),
        "MLINFRA_KERNEL_KEY_FILE": str(tmp_path / "key"),
        "MLINFRA_KERNEL_ENCRYPTION": policy,
        "MLINFRA_RUNTIME_DIR": str(tmp_path / "run"),
        "MLINFRA_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }
    process = subprocess.Popen([sys.executable, str(LAUNCHER)], env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        if policy == "required":
            assert process.wait(120) == 1
            message = (tmp_path / "termination-log").read_text()
            assert message == (
                "transport encryption is required but ipykernel 7.2.0 here does not support"
                " CurveZMQ transport encryption (ipykernel 7.3 and later do)"
            )
            return
        status = asyncio.run(
            until_answered(lambda: command("127.0.0.1", pod_ports(port)[-1], b"k", "status", 5))
        )
        assert status["encryption"] == "none" and "ipykernel 7.2.0" in status["unencrypted"]
        info = json.loads((tmp_path / "run" / "kernel.json").read_text())
        assert "curve_secretkey" not in info and "curve_publickey" not in info
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(30)
        assert process.stdout is not None
        process.stdout.close()


async def until_answered(ask: Any) -> dict[str, Any]:
    """The launcher's first answer (it listens once the kernel's transport is decided)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            answer: dict[str, Any] = await ask()
            return answer
        except LauncherUnreachable:
            assert time.monotonic() < deadline, "the launcher never answered"
            await asyncio.sleep(0.1)


def test_missing_key_is_the_termination_message(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MLINFRA_KERNEL_KEY_FILE": str(tmp_path / "absent"),
        "MLINFRA_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }
    done = subprocess.run([sys.executable, str(LAUNCHER)], env=env, capture_output=True, timeout=60)
    assert done.returncode == 1
    assert "cannot read the kernel key" in (tmp_path / "termination-log").read_text()


def test_image_without_ipykernel_and_no_site_dir_says_so(tmp_path: Path) -> None:
    """``-S``: an interpreter without site-packages stands for an image without ipykernel."""
    (tmp_path / "key").write_text("k")
    env = {
        **os.environ,
        "MLINFRA_KERNEL_KEY_FILE": str(tmp_path / "key"),
        "MLINFRA_SITE": str(tmp_path / "site"),
        "MLINFRA_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }
    done = subprocess.run(
        [sys.executable, "-S", str(LAUNCHER)], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 1
    message = (tmp_path / "termination-log").read_text()
    version = f"py{sys.version_info.major}.{sys.version_info.minor}"
    assert "ipykernel is not installed" in message and f"site/{version}" in message


def test_static_kernelspec_names_the_kubernetes_provisioner() -> None:
    from importlib.metadata import entry_points

    from jupyter_client.kernelspec import KernelSpec

    folder = LAUNCHER.parent / "kernelspec" / "mlinfra-pytorch-kubernetes"
    spec = KernelSpec.from_resource_dir(str(folder))
    provisioner = spec.metadata["kernel_provisioner"]["provisioner_name"]
    registered = {e.name for e in entry_points(group="jupyter_client.kernel_provisioners")}
    assert provisioner in registered and spec.interrupt_mode == "message"
    assert spec.metadata["supported_encryption"] == ["curve"]  # the launcher takes the keys


def test_expired_pod_ends_its_kernel(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("k")
    (tmp_path / "expires-at").write_text("1")  # the downward-API file of the annotation
    env = {
        **os.environ,
        "MLINFRA_KERNEL_IP": "127.0.0.1",
        "MLINFRA_KERNEL_PORT": str(free_port_block()),
        "MLINFRA_KERNEL_KEY_FILE": str(tmp_path / "key"),
        "MLINFRA_RUNTIME_DIR": str(tmp_path / "run"),
        "MLINFRA_EXPIRES_FILE": str(tmp_path / "expires-at"),
        "MLINFRA_TERMINATION_LOG": str(tmp_path / "termination-log"),
    }
    done = subprocess.run([sys.executable, str(LAUNCHER)], env=env, capture_output=True, timeout=60)
    assert done.returncode == 1
    assert "expired" in (tmp_path / "termination-log").read_text()
