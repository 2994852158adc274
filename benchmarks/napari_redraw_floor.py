"""What napari itself costs the GUI thread per review move, by the layers shown.

The review's stepping target (issue 15: p95 block ≤ 50 ms) is measured on the
GUI thread, which also draws napari's canvas. This script runs **no plugin
code** during its measurements: it opens the results of
``benchmarks/napari_responsiveness.py`` (same movie, same layers, same window
size), then replays 20 moves of the review (a frame change and a camera move
to a 4× zoom, as a step to an event on another frame does) with different sets
of layers visible, twice each in alternation, and records the block of each
move (the longest gap of a 50 ms QTimer minus its period).

What it tells: how much of a step's block is napari drawing the layers a
reviewer needs (three 1024² channels, the cell tracks, the death markers), and
how much is left when napari draws nothing. The plugin cannot make a step
cheaper than napari's own move with the same layers.

Run (needs the napari extra and an X server; never QT_QPA_PLATFORM=offscreen):

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python benchmarks/napari_redraw_floor.py

Appends its table to ``benchmarks/results/napari_redraw_floor.md``
(``--out`` to write elsewhere).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import napari_responsiveness as nr  # noqa: E402  (the shared movie, timer and machine info)

REPEATS = 2
SETTLE_S = 0.35


def _configs(layers) -> dict[str, dict[str, bool]]:
    """Visibility sets: as after a run, then without each kind of layer, and less."""
    kinds: dict[str, list[str]] = {}
    for layer in layers:
        kinds.setdefault(type(layer).__name__, []).append(layer.name)
    every = [name for names in kinds.values() for name in names]
    images = kinds.get("Image", [])
    configs = {"as after a run (3 channels, cell tracks, deaths)": {}}
    for kind, names in kinds.items():
        configs[f"without the {kind} layers"] = {n: False for n in names}
    configs["the 3 channels only"] = {n: n in images for n in every}
    if images:
        configs["one channel only"] = {n: n == images[0] for n in every}
    configs["nothing drawn"] = {n: False for n in every}
    return configs


def run(out: Path) -> Path:
    import napari

    from napari_deathtrack._analyze import AnalyzeWidget
    from napari_deathtrack._review import ReviewWidget

    load_before = os.getloadavg()[0]
    movie, results = nr.ensure_data()
    folder = nr.copy_results(results, movie, Path(tempfile.mkdtemp(prefix="napari-floor-")))

    viewer = napari.Viewer(title="deathtrack redraw floor", show=True)
    viewer.window._qt_window.resize(1600, 1000)
    monitor = nr.Monitor()
    viewer.open(str(movie), plugin="deathtrack")
    analyze, review = AnalyzeWidget(viewer), ReviewWidget(viewer)
    viewer.window.add_dock_widget(analyze, name="deathtrack: Analyze", area="right")
    viewer.window.add_dock_widget(review, name="deathtrack: Review deaths", area="right")
    nr.pump(2.0)
    analyze.add_results(folder)
    nr.wait_until(lambda: not analyze.loader.busy and review.review is not None)
    nr.pump(2.0)

    scene = getattr(viewer, "scene", None)  # napari >= 0.9; viewer.camera before
    camera = scene.camera if scene is not None else viewer.camera
    moves = [(f, (300 + 20 * f, 300 + 15 * f)) for f in list(range(5, 55, 5)) * 2]

    def move(frame: int, center: tuple) -> None:
        viewer.dims.set_point(0, frame)
        camera.update({"center": center, "zoom": 4.0})

    def block(frame: int, center: tuple) -> float:
        t0 = time.perf_counter()
        move(frame, center)
        nr.pump(SETTLE_S)
        wall, _ = monitor.gaps(t0, time.perf_counter())
        return max(float(wall.max()) - nr.PERIOD_MS, 0.0) if len(wall) else 0.0

    shown = {layer.name: layer.visible for layer in viewer.layers}
    configs = _configs(viewer.layers)
    blocks: dict[str, list[float]] = {name: [] for name in configs}
    for _ in range(REPEATS):  # alternated, so a busy spell of the machine hits all
        for name, visible in configs.items():
            for layer, default in shown.items():
                viewer.layers[layer].visible = visible.get(layer, default)
            nr.pump(0.5)
            blocks[name] += [block(*m) for m in moves]
    load_after = os.getloadavg()[0]
    info = nr.machine()
    viewer.close()

    lines = [
        "",
        f"## {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, commit {nr.commit()}",
        "",
        f'Command: `xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python '
        f"benchmarks/napari_redraw_floor.py`. Movie {movie.name} (1024² × 60 frames × 3 "
        f"channels), window 1600 × 1000, {len(moves)} moves × {REPEATS} per row "
        "(a frame change and a camera move to zoom 4), no plugin code running. Machine: "
        f"{info.get('cpu', '?')}, {info.get('cores')} cores, napari {info.get('napari')}, "
        f"{info.get('qt')}, OpenGL: {info.get('opengl', '?')}. 1-minute load average "
        f"{load_before:.1f} before, {load_after:.1f} after.",
        "",
        "| layers visible | median block (ms) | p95 block (ms) | longest block (ms) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, b in blocks.items():
        lines.append(f"| {name} | {np.median(b):.0f} | {np.percentile(b, 95):.0f} | {max(b):.0f} |")
    if not out.exists():
        paragraphs = (__doc__ or "").split("\n\n")
        out.write_text(f"# {paragraphs[0]}\n\n" + "\n\n".join(paragraphs[1:3]) + "\n")
    with out.open("a") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "napari_redraw_floor.md")
    args = parser.parse_args(argv)
    return run(args.out)


if __name__ == "__main__":
    main()
    os._exit(0)  # napari's threads can keep a closed viewer's process alive
