"""The labextension's TypeScript unit tests (jest), run as part of the Python suite so that the
README's one test command, and so CI, runs them too."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests import optional

LABEXTENSION = Path(__file__).parent.parent / "labextension"
JEST_TIMEOUT_S = 600


def test_the_labextension_unit_tests_pass() -> None:
    node = shutil.which("node")
    optional.need(node is not None, "node is not installed (it builds the labextension too)")
    jlpm = Path(sys.executable).parent / "jlpm"
    optional.need(jlpm.exists(), "jlpm (JupyterLab's yarn) is missing: pip install -e '.[test]'")
    optional.need(
        (LABEXTENSION / "node_modules" / ".bin" / "jest").exists(),
        "labextension/node_modules lacks jest: pip install -e '.[test]' installs it",
    )
    env = {**os.environ, "PATH": f"{jlpm.parent}{os.pathsep}{os.environ['PATH']}", "CI": "true"}
    result = subprocess.run(
        [str(jlpm), "test", "--ci"],
        cwd=LABEXTENSION,
        env=env,
        capture_output=True,
        text=True,
        timeout=JEST_TIMEOUT_S,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    assert "Tests:" in report and " failed" not in report.split("Tests:")[-1], report
