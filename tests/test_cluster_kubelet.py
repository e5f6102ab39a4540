"""The test kubelet against the real control plane: nodes register and keep their leases, the
real scheduler binds pods to them, and pods run as local processes in their own network
namespaces, reported through the real API; what the API server proxies to a kubelet (logs,
exec, port-forward) works through it, as kubectl and the product's own clients use it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config
from kubernetes_asyncio.stream import WsApiClient

from jupyter_mlinfra.backends.kubernetes.port_forward import PortForward
from tests.cluster.control_plane import ControlPlane
from tests.cluster.kubelet import Kubelet
from tests.waits import until

NAMESPACE = "kubelet-test"


@pytest.fixture(scope="module", autouse=True)
def node_a(control_plane: ControlPlane, kubelet: Kubelet) -> Iterator[None]:
    """The test namespace and one plain node, ``node-a``, for the pods of this module."""
    if NAMESPACE not in control_plane.kubectl("get", "namespaces", "-o", "name"):
        control_plane.create_namespace(NAMESPACE)
    kubelet.add_node("node-a", cpu="4", memory="8Gi")
    try:
        yield
    finally:
        kubelet.remove_node("node-a")
        control_plane.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


def kubectl(plane: ControlPlane, *args: str, input: str | None = None) -> str:
    try:
        return plane.kubectl(f"--namespace={NAMESPACE}", *args, input=input)
    except subprocess.CalledProcessError as error:
        error.add_note(f"kubectl said: {error.stderr}")
        raise


def run_pod(plane: ControlPlane, name: str, script: str, **spec: Any) -> None:
    """A pod of one ``python`` container running ``script``."""
    container = {
        "name": "main",
        "image": "python:3.11",
        "command": ["python", "-c", textwrap.dedent(script)],
        **spec.pop("container", {}),
    }
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"test": name}},
        "spec": {"containers": [container], "terminationGracePeriodSeconds": 5, **spec},
    }
    plane.kubectl("create", "-f", "-", input=json.dumps(pod))


def wait(plane: ControlPlane, name: str, condition: str, timeout: int = 120) -> None:
    """``kubectl wait`` (a watch, not a poll) for ``condition`` of pod ``name``."""
    kubectl(plane, "wait", f"pod/{name}", f"--for={condition}", f"--timeout={timeout}s")


def pod(plane: ControlPlane, name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(kubectl(plane, "get", "pod", name, "-o", "json"))
    return loaded


def delete(plane: ControlPlane, name: str) -> None:
    kubectl(plane, "delete", "pod", name, "--wait=true", "--timeout=120s")


@contextlib.contextmanager
def indexed_job(
    plane: ControlPlane, name: str, script: str, **pod_spec: Any
) -> Iterator[dict[str, Any]]:
    """An Indexed Job of two ``python`` pods running ``script`` and the headless Service that
    names them ``<name>-<index>.<name>``; yields its pods once it completed, deletes both."""
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "clusterIP": "None",
            "selector": {"job-name": name},
            "publishNotReadyAddresses": True,
        },
    }
    container = {"name": "rank", "image": "python:3.11", "command": ["python", "-c", script]}
    container.update(pod_spec.pop("container", {}))
    template = {"subdomain": name, "restartPolicy": "Never", "containers": [container]}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "completions": 2,
            "parallelism": 2,
            "completionMode": "Indexed",
            "backoffLimit": 0,
            "template": {"spec": {**template, **pod_spec}},
        },
    }
    try:
        plane.apply([service, job])
        kubectl(plane, "wait", f"job/{name}", "--for=condition=Complete", "--timeout=300s")
        yield json.loads(kubectl(plane, "get", "pods", "-l", f"job-name={name}", "-o", "json"))
    finally:
        kubectl(plane, "delete", "job", name, "--cascade=foreground", "--ignore-not-found")
        kubectl(plane, "delete", "service", name, "--ignore-not-found")


def test_a_node_registers_with_its_resources_labels_taints_and_lease(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    kubelet.add_node(
        "gpu-1",
        allocatable={"nvidia.com/gpu": "8"},
        labels={"nvidia.com/gpu.product": "A100", "node-role.kubernetes.io/gpu": ""},
        taints=[{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
    )
    try:
        node = json.loads(control_plane.kubectl("get", "node", "gpu-1", "-o", "json"))
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert node["status"]["capacity"]["cpu"] == "16"
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "A100"
        assert "node-role.kubernetes.io/gpu" in node["metadata"]["labels"]  # set as the admin
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node[
            "spec"
        ]["taints"]
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True"
        assert node["status"]["addresses"][0] == {
            "type": "InternalIP",
            "address": control_plane.host,
        }
        lease = json.loads(
            control_plane.kubectl("get", "lease", "gpu-1", "-n", "kube-node-lease", "-o", "json")
        )
        assert lease["spec"]["holderIdentity"] == "gpu-1"
        assert lease["metadata"]["ownerReferences"][0]["uid"] == node["metadata"]["uid"]
        kubelet.set_ready("gpu-1", False)

        def tainted_not_ready() -> bool:
            taints = json.loads(
                control_plane.kubectl("get", "node", "gpu-1", "-o", "jsonpath={.spec.taints}")
            )
            return {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"} in [
                {"key": t["key"], "effect": t["effect"]} for t in taints
            ]

        asyncio.run(until(lambda: asyncio.to_thread(tainted_not_ready)))  # the node controller
    finally:
        kubelet.remove_node("gpu-1")
    assert "gpu-1" not in control_plane.kubectl("get", "nodes", "-o", "name")


def test_a_pod_runs_logs_and_reports_its_status_and_events(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    run_pod(
        control_plane,
        "hello",
        """
        import os, socket
        print("hello from", socket.gethostname(), os.environ["MY_IP"], flush=True)
        for i in range(3):
            print("line", i, flush=True)
        """,
        container={
            "env": [{"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
        },
        restartPolicy="Never",
    )
    wait(control_plane, "hello", "jsonpath={.status.phase}=Succeeded")
    found = pod(control_plane, "hello")
    ip = found["status"]["podIP"]
    assert ip.startswith(control_plane.host.rsplit(".", 1)[0] + ".") and ip != control_plane.host
    assert found["spec"]["nodeName"] == "node-a"
    terminated = found["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")
    logs = kubectl(control_plane, "logs", "hello")
    assert logs == f"hello from hello {ip}\nline 0\nline 1\nline 2\n"
    assert kubectl(control_plane, "logs", "hello", "--tail=1") == "line 2\n"
    stamped = kubectl(control_plane, "logs", "hello", "--timestamps", "--tail=1")
    assert stamped.endswith("Z line 2\n")
    later = "2999-01-01T00:00:00Z"  # sinceTime reaches the kubelet in whole seconds
    assert kubectl(control_plane, "logs", "hello", f"--since-time={later}") == ""
    assert kubectl(control_plane, "logs", "hello", "--since=1h") == logs
    assert kubectl(control_plane, "logs", "hello", "--limit-bytes=5") == "hello"
    events = json.loads(
        kubectl(
            control_plane,
            "get",
            "events",
            "--field-selector=involvedObject.name=hello",
            "-o",
            "json",
        )
    )
    items = sorted(events["items"], key=lambda e: e["metadata"]["name"])  # <pod>.<hex ns>
    assert "Scheduled" in [e["reason"] for e in items]
    kubelet_reasons = [e["reason"] for e in items if e["source"].get("component") == "kubelet"]
    assert kubelet_reasons == ["Pulling", "Pulled", "Created", "Started"]
    delete(control_plane, "hello")


def test_exec_and_port_forward_through_the_api_server(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    """A server listening on the pod's own loopback only: reachable by port-forward (the
    product's, over the API server) as on a real node; exec by kubernetes_asyncio (v4) and by
    kubectl (v5, passed to the kubelet because the node declares ExtendWebSocketsToKubelet)."""
    run_pod(
        control_plane,
        "serves",
        """
        import http.server
        class Hello(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"from the pod")
        http.server.HTTPServer(("127.0.0.1", 8080), Hello).serve_forever()
        """,
    )
    wait(control_plane, "serves", "condition=Ready")
    out = kubectl(control_plane, "exec", "serves", "--", "sh", "-c", "echo out; cat /etc/hostname")
    assert out == "out\nserves\n"
    with pytest.raises(subprocess.CalledProcessError) as failed:
        kubectl(control_plane, "exec", "serves", "--", "sh", "-c", "exit 3")
    assert failed.value.returncode == 3
    counted = kubectl(control_plane, "exec", "-i", "serves", "--", "wc", "-c", input="hello")
    assert counted.strip() == "5"  # stdin, closed by kubectl at its end (v5's channel 255)

    async def through_the_product() -> tuple[str, str]:
        api = await config.new_client_from_config(config_file=str(control_plane.admin_kubeconfig))
        ws = WsApiClient(configuration=api.configuration)
        try:
            executed = await client.CoreV1Api(ws).connect_get_namespaced_pod_exec(
                "serves",
                NAMESPACE,
                command=["cat", "/etc/hostname"],
                stdout=True,
                stderr=True,
                stdin=False,
                tty=False,
            )
            forward = PortForward(api, NAMESPACE, "serves")
            local = await forward.start([8080])
            try:
                async with (
                    aiohttp.ClientSession() as session,
                    session.get(f"http://127.0.0.1:{local[8080]}/") as answer,
                ):
                    body = await answer.text()
            finally:
                await forward.close()
            return str(executed), body
        finally:
            await ws.close()
            await api.close()

    executed, body = asyncio.run(through_the_product())
    assert executed.strip() == "serves"
    assert body == "from the pod"
    delete(control_plane, "serves")


def test_probes_make_a_pod_ready_and_restart_it(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    run_pod(
        control_plane,
        "probed",
        """
        import http.server, os
        class Health(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers()
        http.server.HTTPServer(("0.0.0.0", 8081), Health).serve_forever()
        """,
        container={
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": 8081}, "periodSeconds": 1},
            "livenessProbe": {
                "exec": {"command": ["sh", "-c", "test ! -e /tmp/sick"]},
                "periodSeconds": 1,
                "failureThreshold": 1,
                "timeoutSeconds": 30,  # only the check fails it, not a loaded machine
            },
        },
    )
    wait(control_plane, "probed", "condition=Ready")
    kubectl(control_plane, "exec", "probed", "--", "touch", "/tmp/sick")
    wait(control_plane, "probed", "jsonpath={.status.containerStatuses[0].restartCount}=1")
    wait(control_plane, "probed", "condition=Ready")  # a new container: a fresh /tmp
    events = kubectl(control_plane, "get", "events", "--field-selector=involvedObject.name=probed")
    assert "Liveness probe failed" in events
    delete(control_plane, "probed")


def test_a_memory_limit_kills_the_whole_container(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    run_pod(
        control_plane,
        "hungry",
        """
        import subprocess, sys, time
        hog = "x = bytearray(512 * 1024 * 1024); import time; time.sleep(60)"
        subprocess.Popen([sys.executable, "-c", hog])
        time.sleep(60)  # the parent is small: the container still ends
        """,
        container={"resources": {"limits": {"memory": "128Mi"}}},
        restartPolicy="Never",
    )
    wait(control_plane, "hungry", "jsonpath={.status.phase}=Failed")
    terminated = pod(control_plane, "hungry")["status"]["containerStatuses"][0]["state"][
        "terminated"
    ]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    delete(control_plane, "hungry")


def test_deletion_sends_sigterm_then_waits_the_grace_period(
    control_plane: ControlPlane, kubelet: Kubelet, tmp_path: Path
) -> None:
    run_pod(
        control_plane,
        "graceful",
        """
        import signal, time
        def stop(*_):
            open("/out/got-sigterm", "w").write("yes")
            raise SystemExit(0)
        signal.signal(signal.SIGTERM, stop)
        print("waiting", flush=True)
        time.sleep(600)
        """,
        container={"volumeMounts": [{"name": "out", "mountPath": "/out"}]},
        volumes=[{"name": "out", "hostPath": {"path": str(tmp_path), "type": "Directory"}}],
    )
    wait(control_plane, "graceful", "condition=Ready")
    run_pod(
        control_plane,
        "stubborn",
        """
        import signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)
        """,
        terminationGracePeriodSeconds=2,
    )
    wait(control_plane, "stubborn", "condition=Ready")
    delete(control_plane, "graceful")
    assert (tmp_path / "got-sigterm").read_text() == "yes"
    started = time.monotonic()
    delete(control_plane, "stubborn")
    assert time.monotonic() - started >= 2  # SIGTERM ignored: SIGKILL after the grace period
    assert "stubborn" not in kubelet.processes()


def test_a_pod_calls_the_api_server_with_its_projected_token(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    """The ServiceAccount admission plugin adds the kube-api-access volume; the kubelet fills it
    with a token from the TokenRequest API and kube-root-ca.crt; the pod reaches the API server
    at KUBERNETES_SERVICE_HOST/PORT and is who it should be."""
    run_pod(
        control_plane,
        "in-cluster",
        """
        import json, os, ssl, urllib.request, urllib.error
        folder = "/var/run/secrets/kubernetes.io/serviceaccount"
        token = open(f"{folder}/token").read()
        context = ssl.create_default_context(cafile=f"{folder}/ca.crt")
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        request = urllib.request.Request(
            f"https://{host}:{port}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            data=b'{"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}',
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        review = json.load(urllib.request.urlopen(request, context=context))
        print(review["status"]["userInfo"]["username"], open(f"{folder}/namespace").read())
        """,
        restartPolicy="Never",
    )
    wait(control_plane, "in-cluster", "jsonpath={.status.phase}=Succeeded")
    assert kubectl(control_plane, "logs", "in-cluster") == (
        f"system:serviceaccount:{NAMESPACE}:default {NAMESPACE}\n"
    )
    delete(control_plane, "in-cluster")


def test_restarts_keep_the_previous_log_and_a_deadline_fails_the_pod(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    run_pod(
        control_plane,
        "flaky",
        """
        import os, sys
        first = not os.path.exists("/state/ran")
        open("/state/ran", "w").close()
        print("first run" if first else "second run", flush=True)
        sys.exit(3 if first else 0)
        """,
        container={"volumeMounts": [{"name": "state", "mountPath": "/state"}]},
        volumes=[{"name": "state", "emptyDir": {}}],
        restartPolicy="OnFailure",
    )
    wait(control_plane, "flaky", "jsonpath={.status.phase}=Succeeded")
    status = pod(control_plane, "flaky")["status"]["containerStatuses"][0]
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 3
    assert kubectl(control_plane, "logs", "flaky", "--previous") == "first run\n"
    assert kubectl(control_plane, "logs", "flaky") == "second run\n"
    run_pod(control_plane, "late", "import time; time.sleep(600)", activeDeadlineSeconds=2)
    wait(control_plane, "late", "jsonpath={.status.reason}=DeadlineExceeded")
    assert pod(control_plane, "late")["status"]["phase"] == "Failed"
    delete(control_plane, "flaky")
    delete(control_plane, "late")


def test_an_indexed_job_spans_two_nodes_and_its_pods_find_each_other_by_name(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    """One GPU per node, a pod per GPU: the real scheduler puts the two pods on two nodes;
    pod 1 reaches pod 0 at its stable DNS name (headless Service, CoreDNS) across nodes."""
    for name in ("gpu-a", "gpu-b"):
        kubelet.add_node(name, cpu="4", memory="8Gi", allocatable={"nvidia.com/gpu": "1"})
    try:
        script = textwrap.dedent(
            """
            import os, socket, time
            index = int(os.environ["JOB_COMPLETION_INDEX"])
            if index == 0:
                server = socket.create_server(("0.0.0.0", 29500))
                connection, _ = server.accept()
                print("rank 0 got", connection.recv(100).decode(), flush=True)
            else:
                for _ in range(600):
                    try:
                        connection = socket.create_connection(("ranks-0.ranks", 29500), timeout=2)
                        break
                    except OSError:
                        time.sleep(0.2)
                connection.sendall(f"hello from {socket.gethostname()}".encode())
                print("rank 1 sent", flush=True)
            """
        )
        gpu = {"container": {"resources": {"limits": {"nvidia.com/gpu": "1"}}}}
        with indexed_job(control_plane, "ranks", script, **gpu) as pods:
            assert sorted(p["spec"]["nodeName"] for p in pods["items"]) == ["gpu-a", "gpu-b"]
            logs = kubectl(control_plane, "logs", "-l", "job-name=ranks", "--prefix=false")
            assert "rank 0 got hello from ranks-1" in logs
    finally:
        for name in ("gpu-a", "gpu-b"):
            kubelet.remove_node(name)


def test_a_removed_node_fails_its_pods_as_a_reclaimed_node(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    kubelet.add_node("spot-1", labels={"pool": "spot"})
    run_pod(control_plane, "on-spot", "import time; time.sleep(600)", nodeSelector={"pool": "spot"})
    wait(control_plane, "on-spot", "condition=Ready")
    kubelet.remove_node("spot-1")
    status = pod(control_plane, "on-spot")["status"]
    assert (status["phase"], status["reason"]) == ("Failed", "Terminated")
    disruption = {c["type"]: c for c in status["conditions"]}["DisruptionTarget"]
    assert (disruption["status"], disruption["reason"]) == ("True", "TerminationByKubelet")
    assert "spot-1" not in control_plane.kubectl("get", "nodes", "-o", "name")
    kubectl(control_plane, "delete", "pod", "on-spot", "--grace-period=0", "--force")


def test_the_kubelet_carries_on_after_an_api_server_restart_and_a_compaction(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    """Its watches resume from their last resourceVersion after a restart; after a compaction
    and another restart, resuming gets 410 Gone and they list again. A pod created after each
    still runs, and a pod that ran throughout is still served."""
    run_pod(control_plane, "survivor", "import time; print('up', flush=True); time.sleep(600)")
    wait(control_plane, "survivor", "condition=Ready")
    control_plane.restart_apiserver()
    run_pod(control_plane, "after-restart", "print('ran')", restartPolicy="Never")
    wait(control_plane, "after-restart", "jsonpath={.status.phase}=Succeeded")
    control_plane.compact()
    control_plane.restart_apiserver()
    run_pod(control_plane, "after-compaction", "print('ran')", restartPolicy="Never")
    wait(control_plane, "after-compaction", "jsonpath={.status.phase}=Succeeded")
    assert kubectl(control_plane, "logs", "survivor") == "up\n"
    for name in ("survivor", "after-restart", "after-compaction"):
        delete(control_plane, name)


def test_secrets_reach_env_and_volumes_and_volumes_follow_their_changes(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    """A missing Secret holds the container in CreateContainerConfigError until it exists; a
    Secret volume's files then follow the Secret's changes (the ``..data`` swap), as the
    webhook certificates of Kueue's and JobSet's managers need."""
    run_pod(
        control_plane,
        "secretive",
        "import time; time.sleep(600)",
        container={
            "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "t"}}}],
            "volumeMounts": [{"name": "s", "mountPath": "/etc/s", "readOnly": True}],
        },
        volumes=[{"name": "s", "secret": {"secretName": "s", "optional": True}}],
    )
    wait(
        control_plane,
        "secretive",
        "jsonpath={.status.containerStatuses[0].state.waiting.reason}=CreateContainerConfigError",
    )
    kubectl(control_plane, "create", "secret", "generic", "s", "--from-literal=t=one")
    wait(control_plane, "secretive", "condition=Ready")
    assert kubectl(control_plane, "exec", "secretive", "--", "printenv", "TOKEN") == "one\n"
    assert kubectl(control_plane, "exec", "secretive", "--", "cat", "/etc/s/t") == "one"
    patch = json.dumps({"stringData": {"t": "two"}})
    kubectl(control_plane, "patch", "secret", "s", "--type=merge", "-p", patch)

    def updated() -> bool:
        return kubectl(control_plane, "exec", "secretive", "--", "cat", "/etc/s/t") == "two"

    asyncio.run(until(lambda: asyncio.to_thread(updated)))
    delete(control_plane, "secretive")
    kubectl(control_plane, "delete", "secret", "s")


def test_an_image_that_cannot_be_pulled_backs_off_and_logs_say_why(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    kubelet.fail_image_pull("registry.example/missing:1")
    run_pod(
        control_plane, "unpullable", "print(1)", container={"image": "registry.example/missing:1"}
    )
    wait(
        control_plane,
        "unpullable",
        "jsonpath={.status.containerStatuses[0].state.waiting.reason}=ImagePullBackOff",
    )
    with pytest.raises(subprocess.CalledProcessError) as refused:
        kubectl(control_plane, "logs", "unpullable")
    assert "is waiting to start: trying and failing to pull image" in refused.value.stderr
    delete(control_plane, "unpullable")


def test_an_added_image_carries_its_files_and_env_to_its_non_root_containers(
    control_plane: ControlPlane, kubelet: Kubelet, tmp_path: Path
) -> None:
    """``add_image``: the image's files are read-only at their paths in the container, even
    for a user who could not reach the host folder (pytest's own is private to root), and its
    ``ENV`` comes before the pod's variables, which win."""
    layer = tmp_path / "layer"
    layer.mkdir(mode=0o777)  # the bind alone keeps writes out
    layer.chmod(0o777)
    (layer / "carried.txt").write_text("from the image")
    image = "registry.example/carrying:1"
    kubelet.add_image(image, {"/opt/carried": layer}, {"FROM_IMAGE": "image", "BOTH": "image"})
    try:
        script = """
            import errno, os, pathlib
            print(pathlib.Path("/opt/carried/carried.txt").read_text())
            print(os.environ["FROM_IMAGE"], os.environ["BOTH"])
            try:
                pathlib.Path("/opt/carried/written").write_text("x")
            except OSError as error:
                print(errno.errorcode[error.errno])
        """
        run_pod(
            control_plane,
            "carried",
            script,
            securityContext={"runAsUser": 1000, "runAsGroup": 100},
            restartPolicy="Never",
            container={"image": image, "env": [{"name": "BOTH", "value": "pod"}]},
        )
        wait(control_plane, "carried", "jsonpath={.status.phase}=Succeeded")
        assert kubectl(control_plane, "logs", "carried") == "from the image\nimage pod\nEROFS\n"
        assert not (layer / "written").exists()
        delete(control_plane, "carried")
    finally:
        kubelet.remove_image(image)


def test_an_image_on_the_node_is_not_pulled_again_until_forgotten(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    """Pulled once per node; after ``forget_images`` (image garbage collection) again."""
    image = "registry.example/pulled-once:1"

    def pulls(name: str) -> list[str]:
        run_pod(control_plane, name, "pass", restartPolicy="Never", container={"image": image})
        wait(control_plane, name, "jsonpath={.status.phase}=Succeeded")
        selector = f"--field-selector=involvedObject.name={name}"
        events = json.loads(kubectl(control_plane, "get", "events", selector, "-o", "json"))
        delete(control_plane, name)
        return [e["message"] for e in events["items"] if e["reason"] == "Pulled"]

    assert pulls("first-pull")[0].startswith(f'Successfully pulled image "{image}"')
    assert pulls("cached") == [f'Container image "{image}" already present on machine']
    kubelet.forget_images()
    assert pulls("pulled-again")[0].startswith(f'Successfully pulled image "{image}"')


def test_following_a_log_streams_lines_as_they_come_until_the_container_ends(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    run_pod(
        control_plane,
        "talker",
        """
        import time
        print("first", flush=True)
        while True:
            try:
                open("/tmp/go").close()
                break
            except FileNotFoundError:
                time.sleep(0.05)
        print("second", flush=True)
        """,
        restartPolicy="Never",
    )
    wait(control_plane, "talker", "condition=Ready")
    follower = subprocess.Popen(
        [
            control_plane.built.binary("kubectl"),
            f"--kubeconfig={control_plane.admin_kubeconfig}",
            f"--namespace={NAMESPACE}",
            "logs",
            "-f",
            "talker",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert follower.stdout is not None
        assert follower.stdout.readline() == "first\n"  # while the container still runs
        kubectl(control_plane, "exec", "talker", "--", "touch", "/tmp/go")
        assert follower.stdout.readline() == "second\n"
        assert follower.wait(timeout=60) == 0  # the stream ends with the container
    finally:
        follower.kill()
        follower.wait()
        follower.stdout.close()
    delete(control_plane, "talker")


def test_pytorch_ranks_on_two_nodes_rendezvous_by_dns_name(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    """gloo's ``init_process_group`` across pods, rank 0 named by its stable DNS name: c10d's
    TCPStore client asks for ``AF_INET6`` with ``AI_V4MAPPED``, which glibc answers from CoreDNS's
    A record as on a node (the old fixture's nss_wrapper needed a shim for it)."""
    for name in ("cpu-a", "cpu-b"):
        kubelet.add_node(name, cpu="2", memory="8Gi")
    script = textwrap.dedent(
        """
        import os, torch, torch.distributed as dist
        rank = int(os.environ["JOB_COMPLETION_INDEX"])
        dist.init_process_group("gloo", init_method="tcp://torch-0.torch:29500", rank=rank,
                                world_size=2)
        total = torch.tensor([rank + 1.0])
        dist.all_reduce(total)
        print("rank", rank, "sum", total.item(), flush=True)
        dist.destroy_process_group()
        """
    )
    spread = {
        "podAntiAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"job-name": "torch"}},
                    "topologyKey": "kubernetes.io/hostname",
                }
            ]
        }
    }
    try:
        with indexed_job(control_plane, "torch", script, affinity=spread) as pods:
            assert len({p["spec"]["nodeName"] for p in pods["items"]}) == 2
            logs = kubectl(control_plane, "logs", "-l", "job-name=torch")
            # c10d logs a warning for each lookup made before CoreDNS has rank 0's record
            ranks = [line for line in logs.splitlines() if line.startswith("rank ")]
            assert sorted(ranks) == ["rank 0 sum 3.0", "rank 1 sum 3.0"], logs
    finally:
        for name in ("cpu-a", "cpu-b"):
            kubelet.remove_node(name)


def test_a_force_deleted_pod_has_its_processes_killed(
    control_plane: ControlPlane, kubelet: Kubelet
) -> None:
    """``--grace-period=0 --force`` removes the object at once; the kubelet, seeing it gone,
    kills what ran (a real kubelet does too) and reaps it."""
    run_pod(control_plane, "forced", "import time; time.sleep(600)")
    wait(control_plane, "forced", "condition=Ready")
    pid = kubelet.processes()["forced"]
    kubectl(control_plane, "delete", "pod", "forced", "--grace-period=0", "--force")

    async def ended() -> bool:
        return "forced" not in kubelet.processes() and not Path(f"/proc/{pid}").exists()

    asyncio.run(until(ended))
