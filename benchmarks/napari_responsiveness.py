"""How long the napari plugin blocks the GUI thread while a person reviews 100+ deaths.

A 50 ms ``QTimer`` ticks on napari's GUI thread for the whole session; the gaps
between its ticks are the time the thread could not answer (a gap of 50 ms is
an idle thread). The script drives the plugin as a microscopist would, on a
1024² × 60-frame simulated movie with ≥ 100 deaths, pressing keys on the
canvas, and records, for each action, the longest gap while the action and
its background work ran:

- adding the results of a run (the Analyze panel's path after Run),
- stepping through 30 deaths (J on the canvas, one every 0.5 s),
- labelling 30 deaths with autosave (A / N on the canvas, one every 0.5 s),
- undo (Ctrl+Z, 5 times), retraining, opening a second results folder,
- and, to tell the plugin's share of a block from napari's, napari alone on
  the same layers, with no plugin code running: the 30 moves of the stepping
  phase replayed (the same frame and camera changes, ``dims.set_point`` and
  ``camera.update``), and 30 frame changes without a camera move (frames in
  the frame cache).

For each action the table also gives the plugin's own GUI-thread time (the
sum of its calls from the event loop: key actions, deferred steps, results of
workers) and the longest update of the window (Qt painting the widgets,
napari's canvas drawing its layers with OpenGL, and Qt composing the window
around the canvas), and the blocks of steps to an event on the frame already
shown are told from those that change the frame.

Targets (issue 15): stepping and labelling ≤ 100 ms longest block with the 95th
percentile over actions ≤ 50 ms; everything else ≤ 250 ms. The *block* of an
action is its longest tick gap minus the 50 ms timer period (how long the
thread was busy beyond one tick); the raw gaps are in the table too.

The movie and its results are made when missing, under benchmarks/out/ (never
committed), with:

    deathtrack simulate benchmarks/out --preset large --seed 1 --name large60 \\
        --set n_frames=60 --set p_apoptotic=0.25 --set p_necroptotic=0.25
    deathtrack run benchmarks/out/large60.ome.tif --out benchmarks/out/results

Run (needs the napari extra and an X server; never QT_QPA_PLATFORM=offscreen):

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python benchmarks/napari_responsiveness.py

It runs every phase 3 times (``--runs``), each run in a new process: the test
machine is shared with other work, and one run can be off by a factor of two.
Writes benchmarks/results/napari_responsiveness.md (a summary of the runs, then
each run's tables) and napari_responsiveness.png (the viewer after the last run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
OUT = HERE / "out"
MOVIE = OUT / "large60.ome.tif"
RESULTS = OUT / "results" / "large60"
SIMULATE = [
    "simulate", str(OUT), "--preset", "large", "--seed", "1", "--name", "large60",
    "--set", "n_frames=60", "--set", "p_apoptotic=0.25", "--set", "p_necroptotic=0.25",
]  # fmt: skip
RUN = ["run", str(MOVIE), "--out", str(OUT / "results")]
PERIOD_MS = 50
PACE_S = 0.5  # one key press every half second: a quick reviewer
TARGETS = {  # phase: (longest block ms, p95 of blocks ms or None)
    "stepping through 30 events": (100, 50),
    "labelling 30 events with autosave": (100, 50),
}
OTHER_TARGET = 250


def _deathtrack(args: list[str]) -> None:
    exe = Path(sys.executable).with_name("deathtrack")
    subprocess.run([str(exe), "-q", *args], check=True)


def ensure_data() -> tuple[Path, Path]:
    if not MOVIE.exists():
        print("simulating", MOVIE)
        _deathtrack(SIMULATE)
    if not (RESULTS / "run.json").exists():
        print("analysing", MOVIE)
        _deathtrack(RUN)
    return MOVIE, RESULTS


class Monitor:
    """Ticks of a 50 ms QTimer on the GUI thread; the gaps of a time window.

    Each tick also records the GUI thread's CPU time (``time.thread_time``), so a gap
    can be split into the thread's own work and time it waited (other processes on a
    shared machine, the GIL held by a worker thread, the X server).
    """

    def __init__(self):
        from qtpy.QtCore import QTimer

        self.ticks: list[float] = []
        self.cpu: list[float] = []
        self.timer = QTimer()
        self.timer.setInterval(PERIOD_MS)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        self.ticks.append(time.perf_counter())
        self.cpu.append(time.thread_time())

    def _window(self, t0: float, t1: float) -> slice:
        ticks = np.asarray(self.ticks)
        i0 = max(int(np.searchsorted(ticks, t0)) - 1, 0)
        i1 = int(np.searchsorted(ticks, t1)) + 1
        return slice(i0, i1 + 1)

    def gaps(self, t0: float, t1: float) -> np.ndarray:
        """Gaps (ms) between ticks that overlap the window [t0, t1], and their CPU (ms)."""
        w = self._window(t0, t1)
        wall = np.diff(np.asarray(self.ticks)[w]) * 1000.0
        cpu = np.diff(np.asarray(self.cpu)[w]) * 1000.0
        return np.stack([wall, cpu]) if len(wall) else np.zeros((2, 0))


class PluginTimer:
    """The plugin's GUI-thread calls and the window's updates, as time spans.

    Wraps the methods napari's event loop calls into the plugin (key actions, the
    deferred steps, results of workers, adding a layer), so the plugin's own share of
    a block can be told from napari's drawing; calls made inside another wrapped call
    count once. Adding a layer includes napari's ``add_layer``, which the plugin
    calls. :meth:`watch_window` also records each update of the main window (Qt
    painting the widgets, the canvas drawing with OpenGL, the window composed).
    """

    def __init__(self):
        self.longest: dict[str, tuple[float, str]] = {}
        self.phase = "setup"
        self.calls: list[tuple[float, float]] = []  # top-level plugin calls (t0, t1)
        self.redraws: list[tuple[float, float]] = []  # window updates (t0, t1)
        self.napari: list[tuple[float, float]] = []  # napari work inside plugin calls
        self._depth = 0
        self._napari_depth = 0

    def wrap(self, cls, name: str) -> None:
        import functools

        original = getattr(cls, name)
        timer = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            timer._depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                timer._depth -= 1
                t1 = time.perf_counter()
                if not timer._depth:
                    timer.calls.append((t0, t1))
                ms = (t1 - t0) * 1000.0
                if ms > timer.longest.get(timer.phase, (0.0, ""))[0]:
                    timer.longest[timer.phase] = (ms, f"{cls.__name__}.{name}")

        setattr(cls, name, timed)

    def wrap_napari(self, cls, name: str) -> None:
        """Count a napari method called from plugin code as napari's time, not the plugin's.

        (The plugin asks napari to change the frame, move the camera, restyle the
        markers, add a layer: napari's work, started by the plugin.)
        """
        import functools

        original = getattr(cls, name)
        timer = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            if not timer._depth or timer._napari_depth:
                return original(*args, **kwargs)
            t0 = time.perf_counter()
            timer._napari_depth += 1
            try:
                return original(*args, **kwargs)
            finally:
                timer._napari_depth -= 1
                timer.napari.append((t0, time.perf_counter()))

        setattr(cls, name, timed)

    def watch_window(self) -> None:
        """Record each UpdateRequest of napari's main window (its repaint)."""
        import functools

        from napari._qt.qt_main_window import _QtMainWindow
        from qtpy.QtCore import QEvent

        original = _QtMainWindow.event
        timer = self
        update = QEvent.Type.UpdateRequest

        @functools.wraps(original)
        def event(window, e):
            if e.type() != update:
                return original(window, e)
            t0 = time.perf_counter()
            try:
                return original(window, e)
            finally:
                timer.redraws.append((t0, time.perf_counter()))

        _QtMainWindow.event = event

    @staticmethod
    def _within(spans: list[tuple[float, float]], t0: float, t1: float) -> list[float]:
        return [(b - a) * 1000.0 for a, b in spans if a >= t0 and b <= t1]

    def plugin_ms(self, t0: float, t1: float) -> float:
        """The plugin's own GUI-thread time between t0 and t1 (ms), napari's calls out."""
        return float(sum(self._within(self.calls, t0, t1))) - self.napari_ms(t0, t1)

    def napari_ms(self, t0: float, t1: float) -> float:
        """napari's work started by plugin calls between t0 and t1 (ms)."""
        return float(sum(self._within(self.napari, t0, t1)))

    def redraw_ms(self, t0: float, t1: float) -> float:
        """The longest window update between t0 and t1 (ms)."""
        return float(max(self._within(self.redraws, t0, t1), default=0.0))


def pump(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.002)


def wait_until(condition, timeout: float = 120.0) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout
    while not condition():
        if time.perf_counter() > end:
            raise TimeoutError("the plugin did not finish in time")
        QApplication.processEvents()
        time.sleep(0.002)


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "os": platform.platform(),
        "cores": os.cpu_count(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gb"] = round(int(mem) / 2**20, 1)
    except OSError:
        pass
    try:
        import napari
        import qtpy
        from qtpy.QtCore import PYQT_VERSION_STR

        info["napari"] = napari.__version__
        info["qt"] = f"{qtpy.API_NAME} {PYQT_VERSION_STR}"
    except Exception:
        pass
    try:
        from vispy.gloo import gl

        info["opengl"] = gl.glGetParameter(gl.GL_RENDERER)
    except Exception:
        pass
    return info


def commit() -> str:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            # the results this script writes do not count as changes of the code measured
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)benchmarks/results",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return sha + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "napari_responsiveness.md")
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="folder for a cProfile of the GUI thread in each phase (to find what blocks)",
    )
    parser.add_argument(
        "--runs",
        type=int,
        default=3,
        help="runs, each in a new process (the machine is shared: one run is not enough)",
    )
    parser.add_argument("--json", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    png = args.screenshot or args.out.with_suffix(".png")

    movie, results = ensure_data()
    if args.json is None:
        runs = []
        with tempfile.TemporaryDirectory(prefix="napari-bench-runs-") as tmp:
            for i in range(args.runs):
                last = i == args.runs - 1
                out = Path(tmp) / f"run{i + 1}.json"
                cmd = [sys.executable, str(Path(__file__).resolve()), "--json", str(out)]
                cmd += ["--screenshot", str(png if last else Path(tmp) / f"run{i + 1}.png")]
                if args.profile is not None:
                    cmd += ["--profile", str(args.profile / f"run{i + 1}")]
                print(f"run {i + 1} of {args.runs}", flush=True)
                subprocess.run(cmd, check=True)
                runs.append(json.loads(out.read_text()))
        write_results(args.out, png, runs, runs[-1]["n_events"])
        print(f"wrote {args.out} and {png}")
        return args.out
    return run_once(args, movie, results, png)


def run_once(args, movie: Path, results: Path, png: Path) -> Path:
    """One run of every phase in this process; its rows go to ``args.json``."""
    load_before = os.getloadavg()
    import napari
    import pandas as pd
    from qtpy.QtCore import Qt
    from qtpy.QtTest import QTest

    from deathtrack import columns as col
    from napari_deathtrack._analyze import AnalyzeWidget
    from napari_deathtrack._loader import ResultsLoader
    from napari_deathtrack._review import ReviewWidget

    plugin_timer = PluginTimer()
    for name in (
        "label_current",
        "clear_current",
        "undo",
        "redo",
        "step",
        "retrain",
        "open_results",
        "_follow_selection",
        "_prepare_later",
        "_on_strip",
        "_on_saved",
        "_on_save_finished",
        "_on_retrained",
        "_on_review_loaded",
        "_on_source_changed",
        "_on_selection",
        "_flush_layer_update",
        "save",
        "_show_saving",
        "_on_strip_error",
        "_sort",
    ):
        plugin_timer.wrap(ReviewWidget, name)
    for name in ("_next", "_done", "_on_built", "load"):
        plugin_timer.wrap(ResultsLoader, name)
    plugin_timer.watch_window()
    from napari._vispy.layers.points import VispyPointsLayer
    from napari.components import Dims, LayerList, ViewerModel
    from napari.components.camera import Camera
    from napari.layers.utils.text_manager import TextManager

    for cls, name in (
        (Dims, "set_point"),
        (Camera, "update"),
        (VispyPointsLayer, "_on_data_change"),
        (TextManager, "refresh"),
        (ViewerModel, "add_layer"),
        (LayerList, "remove"),
    ):
        plugin_timer.wrap_napari(cls, name)
    n_events = len(pd.read_csv(results / "events.csv"))
    tmp = Path(tempfile.mkdtemp(prefix="napari-bench-"))
    first = tmp / "a" / results.name
    second = tmp / "b" / results.name
    for dst in (first, second):
        shutil.copytree(results, dst)
        run = json.loads((dst / "run.json").read_text())
        run["stack"] = str(movie.resolve())
        (dst / "run.json").write_text(json.dumps(run))

    viewer = napari.Viewer(title="deathtrack responsiveness", show=True)
    viewer.window._qt_window.resize(1600, 1000)
    monitor = Monitor()
    canvas = viewer.window._qt_viewer.canvas.native
    rows: list[dict] = []

    def record(name: str, actions: list[dict]) -> None:
        n = len(actions)
        cpu = [float(a["cpu"].max()) if len(a["cpu"]) else 0.0 for a in actions]
        if args.profile is not None and phase["name"] in profiles:
            args.profile.mkdir(parents=True, exist_ok=True)
            slug = "".join(ch if ch.isalnum() else "_" for ch in name)
            profiles[phase["name"]].dump_stats(str(args.profile / f"{slug}.prof"))
        phase["name"] = f"after {name}"
        blocks = [a["block"] for a in actions]
        gaps = np.concatenate([a["gaps"] for a in actions if len(a["gaps"])] or [np.zeros(1)])
        plugin = [a["plugin"] for a in actions]
        started = [a["napari"] for a in actions]
        redraw = [a["redraw"] for a in actions]
        split = {}
        for changed in (False, True):
            b = [a["block"] for a in actions if a["frame_changed"] is changed]
            split[changed] = (len(b), float(np.median(b)) if b else None, max(b, default=None))
        rows.append(
            {
                "phase": name,
                "n": n,
                "longest_gap": float(gaps.max()),
                "longest_block": max(blocks),
                "p95_block": float(np.percentile(blocks, 95)),
                "median_block": float(np.median(blocks)),
                "longest_cpu": max(cpu),
                "p95_cpu": float(np.percentile(cpu, 95)),
                "plugin_median": float(np.median(plugin)),
                "plugin_max": max(plugin),
                "napari_median": float(np.median(started)),
                "redraw_median": float(np.median(redraw)),
                "redraw_max": max(redraw),
                "same_frame": split[False],
                "new_frame": split[True],
            }
        )
        r = rows[-1]
        print(
            f"{name:38s} longest gap {r['longest_gap']:6.0f} ms  block {r['longest_block']:6.0f} "
            f"ms  p95 {r['p95_block']:5.0f}  median {r['median_block']:5.0f}  GUI CPU in a gap: "
            f"max {r['longest_cpu']:4.0f} p95 {r['p95_cpu']:4.0f} (n={n})"
        )
        ms, where = plugin_timer.longest.get(name, (0.0, ""))
        rows[-1]["plugin_ms"], rows[-1]["plugin_where"] = ms, where
        print(
            f"{'':38s} plugin code per action: median {r['plugin_median']:.1f} max "
            f"{r['plugin_max']:.1f} ms, napari work it started median {r['napari_median']:.1f} "
            f"ms (longest call {ms:.0f} ms, {where}); window update: "
            f"median {r['redraw_median']:.0f} max {r['redraw_max']:.0f} ms"
        )
        for changed, label in ((False, "same frame"), (True, "new frame")):
            k, med, mx = split[changed]
            if k:
                print(f"{'':38s} {label}: {k} actions, block median {med:.0f} max {mx:.0f} ms")

    profiles: dict[str, object] = {}
    phase = {"name": "setup"}
    time_axis = {"axis": 0}

    def timed(action, until=None, settle: float = 0.3) -> dict:
        profiler = None
        if args.profile is not None:
            import cProfile

            profiler = profiles.setdefault(phase["name"], cProfile.Profile())
            profiler.enable()
        frame_before = viewer.dims.current_step[time_axis["axis"]]
        t0 = time.perf_counter()
        action()
        if until is not None:
            wait_until(until)
        pump(settle)
        t1 = time.perf_counter()
        if profiler is not None:
            profiler.disable()
        wall, cpu = monitor.gaps(t0, t1)
        return {
            "gaps": wall,
            "cpu": cpu,
            "block": max(float(wall.max()) - PERIOD_MS, 0.0) if len(wall) else 0.0,
            "plugin": plugin_timer.plugin_ms(t0, t1),
            "napari": plugin_timer.napari_ms(t0, t1),
            "redraw": plugin_timer.redraw_ms(t0, t1),
            "frame_changed": viewer.dims.current_step[time_axis["axis"]] != frame_before,
        }

    # the stack, as a microscopist opens it (not measured: napari's reader path)
    viewer.open(str(movie), plugin="deathtrack")
    analyze = AnalyzeWidget(viewer)
    review = ReviewWidget(viewer)
    viewer.window.add_dock_widget(analyze, name="deathtrack: Analyze", area="right")
    viewer.window.add_dock_widget(review, name="deathtrack: Review deaths", area="right")
    pump(2.0)

    def start(name: str) -> None:
        phase["name"] = name
        plugin_timer.phase = name

    start("adding results")
    # 1. adding the results of a run (what the Analyze panel does after Run)
    g = timed(
        lambda: analyze.add_results(first),
        until=lambda: not analyze.loader.busy and review.review is not None,
        settle=1.0,
    )
    record("adding results", [g])
    pump(1.0)

    start("stepping through 30 events")
    # 2. stepping through 30 events with J on the canvas
    review.advance.setChecked(True)
    review.table.selectRow(0)
    pump(1.5)
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton)
    pump(0.5)
    views = []  # where each step left the viewer: replayed by napari alone below

    def camera():
        scene = getattr(viewer, "scene", None)  # napari >= 0.9; viewer.camera before
        return scene.camera if scene is not None else viewer.camera

    def view() -> tuple:
        return viewer.dims.point[0], tuple(camera().center), camera().zoom

    per = []
    for _ in range(30):
        per.append(timed(lambda: QTest.keyClick(canvas, Qt.Key.Key_J), settle=PACE_S))
        views.append(view())
    record("stepping through 30 events", per)

    # 3. for scale: the same frame and camera changes, with no plugin code running
    def move(frame: float, center: tuple, zoom: float) -> None:
        if viewer.dims.point[0] != frame:
            viewer.dims.set_point(0, frame)
        camera().update({"center": center, "zoom": zoom})

    review.table.selectRow(0)  # back to the first event (not measured), as stepping began
    pump(1.5)
    start("napari alone: the 30 moves of stepping")
    per = [timed(lambda v=v: move(*v), settle=PACE_S) for v in views]
    record("napari alone: the 30 moves of stepping", per)

    start("napari alone: 30 frame changes")
    # 4. for scale: napari alone changing frames (no camera move), frames already cached
    frames = list(range(5, 55, 5)) * 3
    per = [timed(lambda f=f: viewer.dims.set_point(0, f), settle=PACE_S) for f in frames[:30]]
    record("napari alone: 30 frame changes", per)

    # 5. labelling 30 events with autosave (A / N on the canvas; next after label), from
    # where stepping ended (not measured: back there after napari's moves)
    review.table.selectRow(30)
    pump(1.5)
    start("labelling 30 events with autosave")
    keys = [Qt.Key.Key_A, Qt.Key.Key_N]
    per = [timed(lambda k=keys[i % 2]: QTest.keyClick(canvas, k), settle=PACE_S) for i in range(30)]
    wait_until(lambda: review.is_saved)
    record("labelling 30 events with autosave", per)
    saved = pd.read_csv(first / "events.csv")
    n_saved = int(saved["reviewed_mode"].notna().sum())
    assert n_saved == 30, f"{n_saved} labels on disk, 30 expected"

    start("undo (5 times)")
    # 6. undo (Ctrl+Z on the canvas), 5 times
    per = [
        timed(
            lambda: QTest.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier),
            settle=PACE_S,
        )
        for _ in range(5)
    ]
    wait_until(lambda: review.is_saved)
    record("undo (5 times)", per)

    start("retrain")
    # 7. retrain (the 25 labels left are enough: both modes present)
    g = timed(review.retrain, until=lambda: review.retrain_worker is None, settle=1.0)
    assert "re-classified" in review.status.text(), review.status.text()
    record("retrain", [g])

    start("opening a results folder")
    # 8. opening another results folder (Open results… in the review panel)
    g = timed(
        lambda: review.open_results(second),
        until=lambda: (
            not review.loader.busy
            and review.review is not None
            and review.review.folder == second.resolve()
        ),
        settle=1.0,
    )
    record("opening a results folder", [g])

    # screenshot of the review: the first results alone, an unreviewed necroptotic call
    for layer in list(viewer.layers):
        meta = (layer.metadata or {}).get("deathtrack") or {}
        if meta.get("results") == str(second.resolve()):
            viewer.layers.remove(layer)
    pump(0.5)
    review.source_combo.setCurrentIndex(0)
    wait_until(lambda: review.review is not None and review.review.folder == first.resolve())
    events = review.review.events
    necro = events[events[col.MODE] == col.NECROPTOTIC]
    unreviewed = necro[necro[col.REVIEWED_MODE].isna()]  # the call as the reviewer meets it
    necro = (unreviewed if len(unreviewed) else necro)[col.EVENT_ID]
    review.select_event(int(necro.iloc[len(necro) // 2]))
    wait_until(lambda: review.strip.data is not None and bool(review.strip.data.rows))
    pump(1.0)
    png.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(png), canvas_only=False)
    info = machine()
    info["load"] = (
        f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after "
        f"(1-minute load average, {os.cpu_count()} cores)"
    )
    viewer.close()
    shutil.rmtree(tmp, ignore_errors=True)
    args.json.write_text(json.dumps({"rows": rows, "info": info, "n_events": n_events}))
    return args.json


def _verdict(row: dict) -> str:
    limit, p95 = TARGETS.get(row["phase"], (OTHER_TARGET, None))
    if row["phase"].startswith("napari alone"):
        return "(reference)"
    ok = row["longest_block"] <= limit and (p95 is None or row["p95_block"] <= p95)
    target = f"≤ {limit}" + (f", p95 ≤ {p95}" if p95 else "")
    return f"{'met' if ok else 'MISSED'} ({target})"


def _fmt(v, digits: int = 0) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _phase_table(rows: list[dict]) -> list[str]:
    lines = [
        "| phase | actions | longest gap (ms) | longest block (ms) | p95 block (ms) | "
        "median block (ms) | GUI-thread CPU in one gap, max / p95 (ms) | plugin's own code "
        "per action, median / max (ms) | napari work the plugin started per action, median "
        "(ms) | window update, median / longest (ms) | longest plugin call (ms) | target |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        plugin = f"{r['plugin_ms']:.0f} (`{r['plugin_where']}`)" if r.get("plugin_where") else "—"
        lines.append(
            f"| {r['phase']} | {r['n']} | {r['longest_gap']:.0f} | {r['longest_block']:.0f} | "
            f"{r['p95_block']:.0f} | {r['median_block']:.0f} | {r['longest_cpu']:.0f} / "
            f"{r['p95_cpu']:.0f} | {r['plugin_median']:.1f} / {r['plugin_max']:.1f} | "
            f"{r['napari_median']:.1f} | {r['redraw_median']:.0f} / {r['redraw_max']:.0f} | "
            f"{plugin} | {_verdict(r)} |"
        )
    split = [r for r in rows if r["n"] > 5]
    lines += [
        "",
        "Blocks of the actions that stay on the frame shown and of those that change it:",
        "",
        "| phase | same frame: actions | median / longest block (ms) | new frame: actions | "
        "median / longest block (ms) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in split:
        (n0, m0, x0), (n1, m1, x1) = r["same_frame"], r["new_frame"]
        lines.append(
            f"| {r['phase']} | {n0} | {_fmt(m0)} / {_fmt(x0)} | {n1} | {_fmt(m1)} / {_fmt(x1)} |"
        )
    return lines


def _by_phase(runs: list[dict], phase: str) -> list[dict]:
    return [r for run in runs for r in run["rows"] if r["phase"] == phase]


def write_results(path: Path, png: Path, runs: list[dict], n_events: int) -> None:
    """The results file: a summary of the runs, then each run's tables."""
    info = runs[-1]["info"]
    lines = [
        "# napari plugin: longest GUI-thread block while reviewing",
        "",
        "Made by `benchmarks/napari_responsiveness.py` (see its docstring for what each",
        f"phase does; {len(runs)} runs, each in a new process, because the machine is "
        "shared with other work):",
        "",
        "```bash",
        'xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python benchmarks/napari_responsiveness.py',
        "```",
        "",
        f"Movie: 1024 × 1024 × 60 frames × 3 channels (cells, immune, dye), simulated "
        f"(`deathtrack {' '.join(SIMULATE)}`), {n_events} events found by "
        "`deathtrack run`. Window 1600 × 1000.",
        "",
        f"Commit: {commit()}. Machine: {info.get('cpu', '?')}, {info.get('cores', '?')} cores "
        f"(shared), {info.get('memory_gb', '?')} GB; {info.get('os', '?')}; Python "
        f"{info.get('python', '?')}, napari {info.get('napari', '?')}, {info.get('qt', '?')}; "
        f"OpenGL: {info.get('opengl', '?')} under Xvfb. Machine load (1-minute load average, "
        f"{info.get('cores', '?')} cores) before / after each run: "
        + "; ".join(f"run {i + 1}: {run['info'].get('load', '?')}" for i, run in enumerate(runs))
        + ".",
        "",
        "A 50 ms QTimer ticks on the GUI thread. *Block* = longest tick gap of an action "
        "minus the 50 ms period (how long the thread was busy beyond one tick); p95 and "
        "median are over the actions of the phase (one key press each).",
        "",
        "## Summary",
        "",
        "| phase | longest block, run by run (ms) | p95 block, run by run (ms) | median block "
        "(ms) | plugin code per action, median (ms) | target |",
        "| --- | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in runs[0]["rows"]:
        all_runs = _by_phase(runs, r["phase"])
        met = sum(_verdict(x).startswith("met") for x in all_runs)
        verdict = _verdict(r)
        if not r["phase"].startswith("napari alone"):
            verdict = f"met in {met} of {len(all_runs)} runs ({verdict.split('(', 1)[1]}"

        def each(key: str, digits: int = 0, rows=all_runs) -> str:
            return " / ".join(_fmt(x[key], digits) for x in rows)

        lines.append(
            f"| {r['phase']} | {each('longest_block')} | {each('p95_block')} | "
            f"{each('median_block')} | {each('plugin_median', 1)} | {verdict} |"
        )
    step = _by_phase(runs, "stepping through 30 events")
    replay = _by_phase(runs, "napari alone: the 30 moves of stepping")
    label = _by_phase(runs, "labelling 30 events with autosave")
    frames = _by_phase(runs, "napari alone: 30 frame changes")
    if step and replay and label and frames:

        def med(rows, key):
            return float(np.median([x[key] for x in rows]))

        def split(rows, which, i):
            values = [x[which][i] for x in rows if x[which][i] is not None]
            return float(np.median(values)) if values else float("nan")

        lines += [
            "",
            "How to read it: *napari alone* runs no plugin code on the same layers: it "
            "replays the 30 frame and camera changes of the stepping phase, and changes "
            "frames without moving the camera (frames in memory). Medians over the runs: "
            f"a step blocks {med(step, 'median_block'):.0f} ms (p95 "
            f"{med(step, 'p95_block'):.0f}), napari making the same move alone "
            f"{med(replay, 'median_block'):.0f} ms (p95 {med(replay, 'p95_block'):.0f}); "
            f"a step to an event on the frame shown blocks {split(step, 'same_frame', 1):.0f} "
            f"ms (napari's camera move alone {split(replay, 'same_frame', 1):.0f}), one to "
            f"another frame {split(step, 'new_frame', 1):.0f} ms (napari alone "
            f"{split(replay, 'new_frame', 1):.0f}; a bare frame change "
            f"{med(frames, 'median_block'):.0f} ms, p95 {med(frames, 'p95_block'):.0f}). The "
            f"plugin's own code takes {med(step, 'plugin_median'):.1f} ms of the GUI thread "
            f"per step and {med(label, 'plugin_median'):.1f} ms per label (median); the "
            f"window's update (Qt painting the widgets, napari's canvas drawing the layers "
            f"with software OpenGL, llvmpipe, and Qt composing the window) takes "
            f"{med(step, 'redraw_median'):.0f} ms per step and "
            f"{med(replay, 'redraw_median'):.0f} ms for napari's move alone. The rest of a "
            "block is the machine's other work (the CPU column counts only the GUI "
            "thread's own CPU time; llvmpipe draws in threads of its own). *Longest plugin "
            "call* is the longest single call of the plugin's code in a phase (for adding "
            "and opening results it includes napari's `add_layer`, which the plugin calls "
            "one layer per event-loop turn).",
        ]
    for i, run in enumerate(runs):
        lines += ["", f"## Run {i + 1}", "", *_phase_table(run["rows"])]
    lines += [
        "",
        f"![the review after the benchmark]({png.name})",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines), encoding="utf-8")


if __name__ == "__main__":
    main()
