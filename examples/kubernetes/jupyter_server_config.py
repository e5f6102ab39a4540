# jupyter-mlinfra on a Kubernetes cluster: kernels are pods, jobs are Jobs/JobSets.
# Use with the RBAC of rbac.yaml (the server runs as jupyter-mlinfra/jupyter-mlinfra-server)
# and, for queued jobs, the Kueue objects of kueue.yaml.
c = get_config()  # noqa: F821 (provided by Jupyter when it loads this file)

c.MLInfraApp.backend = "kubernetes"
c.MLInfraApp.catalog_file = "/etc/jupyter/mlinfra/catalog.yaml"  # e.g. examples/catalog.yaml

# Which cluster: in a pod, its service account (in-cluster); elsewhere a kubeconfig.
# c.KubernetesCluster.kubeconfig = "/home/admin/.kube/config"
# c.KubernetesCluster.context = "training-cluster"
c.KubernetesCluster.namespace = "jupyter-mlinfra"  # or "jupyter-{username}", see rbac.yaml

# Kernel pods: the init image built from kernels/init/Dockerfile, pushed to your registry.
c.KubernetesKernels.init_image = "registry.example.org/mlinfra/kernel-init:latest"
c.KubernetesKernels.env_allowlist = ["HF_ENDPOINT", "WANDB_BASE_URL", "TZ"]
c.KubernetesKernels.autoscaler_grace = 30.0  # the cluster autoscaler may add a GPU node
c.KubernetesKernels.capacity_timeout = 900.0
c.KubernetesKernels.pull_timeout = 1200.0  # Deep Learning images are large
c.KubernetesKernels.on_server_stop = "detach"  # kernels survive server restarts
c.KubernetesKernels.expiry = 8 * 3600.0

# The user's files in kernel and job pods, at the same path as on this server (its root
# directory): here a per-user folder of an NFS export. Datasets are the catalog's volumes
# (examples/catalog.yaml, with datasets.yaml for its claim).
c.KubernetesPods.home_volume = {
    "nfs": {"server": "nfs.example.org", "path": "/exports/home"},
    "sub_path": "{username}",
}
# Escape hatches, applied to kernel and job pods alike (they add; they cannot change the
# flavor's resources or the security context):
c.KubernetesPods.extra_pod_config = {"priorityClassName": "interactive"}
c.KubernetesPods.extra_container_config = {"envFrom": [{"configMapRef": {"name": "proxy"}}]}

# Kernel messages cross the pod network: encrypt them (CurveZMQ), and start no kernel that
# cannot be (an image whose own ipykernel is older than 7.3 fails its start, saying so).
c.MappingKernelManager.transport_encryption = "required"

# Spot and reserved capacity: how those nodes are labelled and tainted on this cluster.
c.KubernetesCluster.capacity_placement = {
    "spot": {
        "node_selector": {"cloud.google.com/gke-spot": "true"},
        "tolerations": [
            {
                "key": "cloud.google.com/gke-spot",
                "operator": "Equal",
                "value": "true",
                "effect": "NoSchedule",
            }
        ],
    },
    "reserved": {"node_selector": {"cloud.google.com/reservation-name": "a100-reservation"}},
}
