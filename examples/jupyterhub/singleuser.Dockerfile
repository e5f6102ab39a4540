# The single-user image for values.yaml: JupyterLab, JupyterHub's single-user server and
# jupyter-mlinfra (its server extension and JupyterLab extension), from this repository.
#
#   docker build -f examples/jupyterhub/singleuser.Dockerfile -t registry.example.com/jupyter-mlinfra-singleuser:0.1.0 .
FROM quay.io/jupyter/base-notebook:latest

COPY --chown=${NB_UID}:${NB_GID} . /tmp/jupyter-mlinfra
# the JupyterLab extension is built during the install: Node.js is needed only for it
RUN mamba install --yes nodejs=20 \
    && pip install --no-cache-dir /tmp/jupyter-mlinfra \
    && mamba remove --yes nodejs \
    && mamba clean --all --yes \
    && rm -rf /tmp/jupyter-mlinfra
