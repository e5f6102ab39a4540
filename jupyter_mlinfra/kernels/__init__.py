"""Interactive kernels sized to a flavor: a kernel provisioner that holds a lease from the local
agent, generated kernelspecs, the ``/kernels`` REST API and idle culling of accelerator kernels.

- ``registry``: where provisioners and the kernel spec manager find the server's extension;
- ``lease``: the agent's lease API, as the server calls it;
- ``launch``: what a flavor kernel's process gets (environment variables, pinned command);
- ``provisioner``: ``MLInfraProvisioner``, the ``mlinfra-local-provisioner`` entry point;
- ``specs``: ``MLInfraKernelSpecManager``, one kernelspec per environment (and flavor);
- ``service``: start, list and stop flavor kernels through jupyter_server's kernel manager;
- ``culler``: shuts down idle kernels that hold accelerators;
- ``handlers``: the REST handlers.
"""
