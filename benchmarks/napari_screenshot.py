"""Screenshot of the napari plugin reviewing the demo: a necroptotic and an apoptotic call.

Runs the pipeline on the demo movie (shipped inside deathtrack, ~10 s) into a
temporary folder, unless ``--results DIR`` names an existing results folder;
opens it with the plugin's reader, docks the Analyze and Review panels (as
tabs), selects the most confident necroptotic call, saves the window, selects
the most confident apoptotic call, saves it again, and puts the two side by
side in benchmarks/results/napari_review.png.

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python benchmarks/napari_screenshot.py

(needs the napari extra: pip install -e ".[napari]").
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "napari_review.png"


def _pump(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.005)


def _wait(condition, timeout: float = 60.0) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError("the review panel did not get ready")
        QApplication.processEvents()
        time.sleep(0.005)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=None, help="an existing results folder")
    parser.add_argument("--out", type=Path, default=OUT, help="PNG to write")
    args = parser.parse_args(argv)

    import imageio.v3 as iio
    import napari

    from deathtrack import columns as col
    from deathtrack.cli import DEMO_STACK
    from deathtrack.config import PipelineConfig
    from deathtrack.pipeline import run_stack
    from napari_deathtrack._analyze import AnalyzeWidget
    from napari_deathtrack._review import ReviewWidget

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.results
        if folder is None:
            folder = run_stack(DEMO_STACK, PipelineConfig(), tmp, progress=False).out_dir
        viewer = napari.Viewer(title="deathtrack review", show=True)
        viewer.window._qt_window.resize(1500, 980)
        viewer.open(str(folder), plugin="deathtrack")
        analyze = AnalyzeWidget(viewer)
        review = ReviewWidget(viewer)
        viewer.window.add_dock_widget(analyze, name="deathtrack: Analyze", area="right")
        viewer.window.add_dock_widget(review, name="deathtrack: Review deaths", area="right")
        overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
        scale_bar = overlays.scale_bar if overlays is not None else viewer.scale_bar
        scale_bar.visible = True  # in µm: the layers carry their units
        _wait(lambda: review.review is not None)
        events = review.review.events
        p = events[col.P_NECROPTOTIC]
        picks = [
            int(events.loc[p[events[col.MODE] == mode].idxmax() if mode == col.NECROPTOTIC
                           else p[events[col.MODE] == mode].idxmin(), col.EVENT_ID])
            for mode in (col.NECROPTOTIC, col.APOPTOTIC)
        ]  # fmt: skip
        shots = []
        for event_id in picks:
            review.select_event(event_id)
            _wait(
                lambda event_id=event_id: (
                    review.strip.data is not None
                    and review.strip.data.event_id == event_id
                    and bool(review.strip.data.rows)
                )
            )
            _pump(1.5)  # let Qt lay out the window and draw the canvas
            shots.append(viewer.screenshot(canvas_only=False))
        viewer.close()
    height = max(s.shape[0] for s in shots)
    gap = np.full((height, 12, shots[0].shape[2]), 255, np.uint8)
    padded = [np.pad(s, ((0, height - s.shape[0]), (0, 0), (0, 0))) for s in shots]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.out, np.concatenate([padded[0], gap, padded[1]], axis=1))
    print(f"wrote {args.out} (events {picks[0]} necroptotic, {picks[1]} apoptotic)")
    return args.out


if __name__ == "__main__":
    main()
