# jupyter-mlinfra settings for a shared workstation; every setting is documented in the README's
# configuration reference. Copy to ~/.jupyter/jupyter_server_config.py (or a JupyterHub's
# single-user config) and adapt.
from pathlib import Path

c = get_config()  # noqa: F821 -- provided by Jupyter when it loads this file

c.MLInfraApp.backend = "local"
c.MLInfraApp.catalog_file = str(Path(__file__).with_name("catalog.yaml"))

# Flavor entitlements and group quotas use these groups (JupyterHub's groups are added to them).
c.MLInfraApp.groups = {"research": ["alice", "bob"], "students": ["carol"]}
c.MLInfraApp.admin_users = {"admin"}

c.MLInfraApp.default_quota = {"max_gpus": 1, "max_running_jobs": 2, "max_queued_jobs": 10}
c.MLInfraApp.group_quotas = {
    "research": {"max_gpus": 4, "max_running_jobs": 8, "max_queued_jobs": 100},
}
c.MLInfraApp.user_quotas = {"carol": {"max_gpus": 0, "max_running_jobs": 1}}
