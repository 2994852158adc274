"""Screenshot of the napari plugin reviewing the demo results: benchmarks/results/napari_review.png.

Runs the pipeline on the demo movie (sample_data/demo.ome.tif, ~5 s) into a
temporary folder, unless ``--results DIR`` names an existing results folder;
opens it with the plugin's reader, docks the Analyze and Review panels,
selects an event and saves the whole window.

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python benchmarks/napari_screenshot.py

(needs the napari extra: pip install -e ".[napari]").
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "napari_review.png"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=None, help="an existing results folder")
    parser.add_argument("--event", type=int, default=2, help="event_id to select")
    parser.add_argument("--out", type=Path, default=OUT, help="PNG to write")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

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
        viewer.window.resize(1900, 1180)
        viewer.open(str(folder), plugin="deathtrack")
        analyze = AnalyzeWidget(viewer)
        review = ReviewWidget(viewer)
        docks = [
            viewer.window.add_dock_widget(analyze, name="deathtrack: Analyze", area="right"),
            viewer.window.add_dock_widget(review, name="deathtrack: Review deaths", area="right"),
        ]
        # the review panel is the one in use: give it most of the height (the Analyze
        # panel scrolls)
        docks[0].parentWidget().resizeDocks(docks, [300, 860], Qt.Orientation.Vertical)
        overlays = getattr(getattr(viewer, "canvas", None), "overlays", None)
        scale_bar = overlays.scale_bar if overlays is not None else viewer.scale_bar
        scale_bar.visible = True  # in µm: the layers carry their units
        review.select_event(args.event)
        review.table.setFocus()
        for _ in range(20):  # let Qt lay out the window and draw the canvas
            QApplication.processEvents()
        args.out.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(args.out), canvas_only=False)
        viewer.close()
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
