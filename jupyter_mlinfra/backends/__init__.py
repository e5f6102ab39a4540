"""Where kernels and jobs run: ``local`` (this machine, the default) or ``kubernetes``."""
