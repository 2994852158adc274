"""A wheel of deathtrack, installed in a fresh virtual environment, offers and opens the sample.

Builds the wheel with ``python -m build`` (``--no-isolation`` when this
environment has the build backend, as the dev extra does, so no package index
is needed for the build), makes a new venv, installs the wheel
with its napari extra into it (pip of this environment, ``--python`` the new
one), and, from a folder outside the source tree, checks that napari finds the
plugin's sample and opens it: the demo movie ships inside the package. About
30-60 s (the install dominates), so it is marked slow, but it runs in the
normal suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("build")

REPO = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.slow, pytest.mark.gui]

SCRIPT = r"""
import json, sys
from pathlib import Path
import deathtrack, napari_deathtrack
from deathtrack.cli import DEMO_STACK
import npe2
pm = npe2.PluginManager.instance()
pm.discover()
samples = {name: [s.key for s in contribs] for name, contribs in pm.iter_sample_data()}
import napari
viewer = napari.Viewer(show=False)
viewer.open_sample("deathtrack", "demo")
print(json.dumps({
    "deathtrack": deathtrack.__file__,
    "plugin": napari_deathtrack.__file__,
    "demo": str(DEMO_STACK),
    "demo_exists": DEMO_STACK.is_file(),
    "samples": samples,
    "layers": [[layer.name, list(layer.data.shape)] for layer in viewer.layers],
}))
viewer.close()
"""


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)
    assert out.returncode == 0, f"{' '.join(cmd)}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


def _build_requirements_installed() -> bool:
    """The build backend of pyproject.toml is in this environment (the dev extra has it)."""
    from importlib.metadata import PackageNotFoundError, version

    from packaging.version import Version

    try:
        return Version(version("setuptools")) >= Version("69") and bool(version("wheel"))
    except PackageNotFoundError:
        return False


def test_a_wheel_in_a_fresh_venv_offers_the_demo_sample_and_opens_it(tmp_path):
    import json

    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        pytest.skip("no X server for napari (pytest-xvfb starts one when Xvfb is installed)")
    dist = tmp_path / "dist"
    # without isolation the build needs no package index (offline); otherwise build fetches
    # the backend from the configured index into an isolated environment
    isolation = ["--no-isolation"] if _build_requirements_installed() else []
    _run([sys.executable, "-m", "build", "--wheel", *isolation, "--outdir", str(dist), str(REPO)])
    (wheel,) = dist.glob("deathtrack-*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet",
          "--no-compile", f"{wheel}[napari]"])  # fmt: skip

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out = _run([str(python), "-c", SCRIPT], cwd=tmp_path, env=env)
    info = json.loads(out.stdout.strip().splitlines()[-1])
    site = str(venv)
    # the installed package, not the source tree, and the sample inside it
    assert info["deathtrack"].startswith(site) and info["plugin"].startswith(site)
    assert info["demo"].startswith(site) and info["demo_exists"]
    assert "demo" in info["samples"]["deathtrack"]
    assert info["layers"] == [
        ["cells (demo)", [40, 224, 224]],
        ["immune (demo)", [40, 224, 224]],
        ["dye (demo)", [40, 224, 224]],
    ]
