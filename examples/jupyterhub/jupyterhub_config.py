# A JupyterHub on one machine whose users share its accelerators through one queue.
#
# The local agent of jupyter-mlinfra runs once, as a hub service ("mlinfra"): every user's
# server sends it their jobs and kernels' device leases with the user's hub token, so all users
# share one capacity, one queue and one set of quotas, and two users never get the same GPU.
# The extension's settings (catalog, quotas) are in jupyter_server_config.py beside this file,
# read by the agent and by every single-user server alike. Walk-through: README.md here.
#
#   sudo MLINFRA_HUB_PASSWORD=<8+ characters> MLINFRA_HUB_ADMIN_PASSWORD=<another> \
#       jupyterhub -f examples/jupyterhub/jupyterhub_config.py
import os
import sys
from pathlib import Path

c = get_config()  # noqa: F821 -- provided by JupyterHub when it loads this file

HERE = Path(__file__).resolve().parent
SERVICE = "mlinfra"
AGENT_PORT = 10101
AGENT_URL = f"http://127.0.0.1:{AGENT_PORT}/services/{SERVICE}/"
STATE = Path(os.environ.get("MLINFRA_HUB_STATE", "/var/lib/jupyter-mlinfra"))
# Every process below reads jupyter_server_config.py from here (catalog, quotas, priorities).
SETTINGS = {"JUPYTER_CONFIG_DIR": str(HERE)}

c.JupyterHub.bind_url = "http://:8000"

# --- who: a shared password to try it; use your real authenticator in production ----------
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ.get("MLINFRA_HUB_PASSWORD", "")
c.SharedPasswordAuthenticator.admin_password = os.environ.get("MLINFRA_HUB_ADMIN_PASSWORD", "")
c.Authenticator.allowed_users = {"alice", "bob", "carol"}
c.Authenticator.admin_users = {"carol"}  # hub admins see, reprioritise and cancel all jobs

# Hub groups decide flavor entitlements and group quotas (see jupyter_server_config.py).
c.JupyterHub.load_groups = {
    "research": {"users": ["alice"]},
    "students": {"users": ["bob"]},
}

# --- single-user servers: each user's own OS account, running this Python -----------------
# LocalProcessSpawner (the hub running as root) starts each user's server as the OS account of
# the user's name, and the agent (root too, as the hub's service) starts each job's ranks as
# its owner's account: no user can read, change or run another's files, jobs or results
# (README: "What is isolated from what"). Create one account per hub user first, and install
# this Python where every account can run it (not under /root).
# For a quick try without accounts, spawner_class = "simple" runs every server as the hub's
# account and isolates nobody. Not root, the agent then runs every job as its own account;
# as root it refuses jobs of users without accounts, unless c.MLInfraApp.run_ranks_as =
# "agent" and unsafe_ranks_as_root = True. Either way it says at every start, and in each
# user's whoami, that users are not isolated.
c.JupyterHub.spawner_class = "localprocess"
c.Spawner.cmd = [sys.executable, "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.environment = {**SETTINGS, "JUPYTER_MLINFRA_AGENT_URL": AGENT_URL}
# The server's own token ($JUPYTERHUB_API_TOKEN) reads its owner's groups and admin status,
# and may call the shared agent.
c.Spawner.server_token_scopes = [
    "users:activity!user",
    "access:servers!server",
    "read:users:name!user",
    "read:users:groups!user",
    f"access:services!service={SERVICE}",
]

# --- the shared agent, started and stopped by the hub -------------------------------------
AGENT = [sys.executable, "-m", "jupyter_mlinfra.cli", "agent", "--hub"]
c.JupyterHub.services = [
    {
        "name": SERVICE,
        "url": f"http://127.0.0.1:{AGENT_PORT}",
        "command": [*AGENT, "--data-dir", str(STATE / "data")],  # jobs, logs, leases
        "environment": SETTINGS,
    }
]
c.JupyterHub.load_roles = [
    # users (hence their servers' tokens) may call the agent
    {"name": "user", "scopes": ["self", f"access:services!service={SERVICE}"]},
    # the agent looks up each caller's groups and admin status
    {
        "name": "mlinfra-agent",
        "services": [SERVICE],
        "scopes": ["read:users:name", "read:users:groups"],
    },
]
