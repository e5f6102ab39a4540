"""Where a kernel started through the API may run: inside the server's root directory only.

The API's ``path`` (of a notebook or folder, relative to the root as Jupyter's contents API
names it) becomes the kernel's working directory; jupyter_server joins it to the root without
resolving it, so ``../../etc`` or a symlink out of the root would start the kernel elsewhere.
"""

from __future__ import annotations

import os

from ..errors import InvalidInput, shown

MAX_PATH = 4096


def confined_path(root_dir: str, path: str) -> str:
    """``path`` unchanged when, resolved (``..`` and symlinks followed), it stays within
    ``root_dir``; otherwise a 400 naming ``path``."""
    if not path:
        return ""
    if len(path) > MAX_PATH or "\0" in path:
        raise InvalidInput(f"path: not a path of at most {MAX_PATH} characters", "path")
    if path.startswith("/"):
        raise InvalidInput(
            f"path: must be relative to the server's root directory, got {shown(path)}", "path"
        )
    root = os.path.realpath(root_dir)
    target = os.path.realpath(os.path.join(root, *path.split("/")))
    if target != root and not target.startswith(root.rstrip(os.sep) + os.sep):
        raise InvalidInput(f"path: {shown(path)} leads outside the server's root directory", "path")
    return path
