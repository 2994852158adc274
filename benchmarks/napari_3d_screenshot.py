"""A 3D result in napari: a simulated z-stack movie (issue 17) run with the default config,
opened from its results folder and rendered in 3D (labels, tracks and deaths at their depth).

Usage (needs a display; headless under Xvfb):
    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/napari_3d_screenshot.py

Writes ``benchmarks/results/napari_3d.png``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

OUT = Path(__file__).parent / "results" / "napari_3d.png"


def main() -> None:
    import napari
    import numpy as np
    import pandas as pd
    from imageio.v3 import imwrite

    from deathtrack.config import PipelineConfig
    from deathtrack.pipeline import run_stack
    from deathtrack.simulate3d import random_config_3d, simulate_3d, write_simulation_3d

    work = Path(tempfile.mkdtemp(prefix="deathtrack-3d-shot-"))
    paths = write_simulation_3d(simulate_3d(random_config_3d(3)), work)  # a development seed
    cfg = PipelineConfig.model_validate(
        {"input": {"channels": {"cells": 0, "immune": 1, "dye": 2}}}
    )
    res = run_stack(paths["movie"], cfg, work / "res", progress=False)
    events = pd.read_csv(res.out_dir / "events.csv")
    nec = events[events["mode"] == "necroptotic"]
    t = int((nec if len(nec) else events)["frame"].iloc[0]) + 2

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 950)
    viewer.open(res.out_dir, plugin="deathtrack")
    for layer in viewer.layers:
        name = layer.name.lower()
        if "labels" in name:
            layer.visible = "cells" in name
            layer.opacity = 0.5
        if "immune tracks" in name:
            layer.visible = True
        if name.startswith("dye") or name.startswith("caspase"):
            layer.visible = False
        if layer.__class__.__name__ == "Image" and name.split()[0] in ("cells", "immune"):
            layer.colormap = "green" if name.startswith("cells") else "magenta"
            layer.blending = "additive"
            lo, hi = layer.contrast_limits
            layer.contrast_limits = (lo + 0.2 * (hi - lo), hi)  # the background dark
    viewer.dims.ndisplay = 3
    viewer.dims.set_current_step(0, t)
    viewer.camera.angles = (-20, 35, 150)
    viewer.camera.zoom *= 0.75
    overlay = viewer.canvas.overlays["text"] if hasattr(viewer, "canvas") else viewer.text_overlay
    overlay.visible = True
    overlay.text = (
        f"3D run, frame {t}: {len(events)} deaths "
        f"({(events['mode'] == 'necroptotic').sum()} necroptotic), tracks with z"
    )
    for _ in range(5):
        napari.qt.get_qapp().processEvents()
    shot = viewer.screenshot(canvas_only=False)
    imwrite(OUT, np.asarray(shot))
    print(OUT, shot.shape, [layer.name for layer in viewer.layers])
    viewer.close()


if __name__ == "__main__":
    main()
