"""The napari plugin in a real viewer: sample data, the Analyze and Review panels.

Runs under Xvfb (pytest-xvfb starts it). Without napari / pytest-qt the module
is skipped; without an X server it is skipped with the reason instead of Qt
aborting the whole pytest process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")


def _qt_cannot_start() -> str | None:
    """Why Qt cannot open a window here, or None when it can (checked in a subprocess)."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    ):
        return (
            "no X server: install Xvfb (pytest-xvfb then starts one for the tests) "
            "or run under xvfb-run"
        )
    code = "from qtpy.QtWidgets import QApplication; app = QApplication([]); print('ok')"
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
    except subprocess.TimeoutExpired:
        return "Qt did not start within 60 s"
    if out.returncode != 0 or "ok" not in out.stdout:
        tail = (out.stderr or out.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"Qt cannot open a window (exit status {out.returncode}: {tail[0]})"
    return None


_reason = _qt_cannot_start()
if _reason:
    pytest.skip(f"napari GUI tests skipped: {_reason}", allow_module_level=True)

from qtpy.QtCore import QPoint, Qt  # noqa: E402

from deathtrack import columns as col  # noqa: E402
from deathtrack.cli import DEMO_STACK  # noqa: E402
from napari_deathtrack import _lazy  # noqa: E402
from napari_deathtrack._analyze import AnalyzeWidget, default_output_dir  # noqa: E402
from napari_deathtrack._reader import napari_get_reader  # noqa: E402
from napari_deathtrack._review import ReviewWidget  # noqa: E402

pytestmark = [pytest.mark.gui]

RUN_TIMEOUT_MS = 150_000  # the demo takes 5-60 s depending on the machine


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory) -> Path:
    """The pipeline's results on the demo movie, computed once (~5 s)."""
    from deathtrack.config import PipelineConfig
    from deathtrack.pipeline import run_stack

    if not DEMO_STACK.exists():
        pytest.skip(f"{DEMO_STACK} is missing")
    out = run_stack(DEMO_STACK, PipelineConfig(), tmp_path_factory.mktemp("demo"), progress=False)
    yield out.out_dir
    _lazy.close_all()


@pytest.fixture
def results(demo_results, tmp_path) -> Path:
    dst = tmp_path / demo_results.name
    shutil.copytree(demo_results, dst)
    return dst


def layer_names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers]


DEMO_LAYERS = ["cells (demo)", "immune (demo)", "dye (demo)"]


def _analyze(viewer, qtbot) -> AnalyzeWidget:
    widget = AnalyzeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Analyze")
    return widget


def _review(viewer, qtbot) -> ReviewWidget:
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Review deaths")
    return widget


def _wait_saved(qtbot, widget) -> None:
    qtbot.waitUntil(lambda: widget.is_saved, timeout=10_000)
    assert widget.save_error is None, widget.save_error


def _wait_strip(qtbot, widget) -> None:
    event_id = widget.current_event
    qtbot.waitUntil(
        lambda: (
            widget.strip.data is not None
            and widget.strip.data.event_id == event_id
            and bool(widget.strip.data.rows)
        ),
        timeout=10_000,
    )


def _saved_label(results: Path, event_id: int):
    saved = pd.read_csv(results / "events.csv")
    value = saved.loc[saved[col.EVENT_ID] == event_id, "reviewed_mode"].iloc[0]
    return None if pd.isna(value) else value


# -- sample data and reader ------------------------------------------------------------


def test_sample_data_opens_the_demo_movie_through_the_reader(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("deathtrack", "demo")
    assert layer_names(viewer) == DEMO_LAYERS
    for layer in viewer.layers:
        assert tuple(layer.scale) == pytest.approx((1.0, 0.65, 0.65))
        assert [str(u) for u in layer.units] == ["pixel", "micrometer", "micrometer"]
        assert layer.blending == "additive"
        assert layer.metadata["deathtrack"]["stack"] == str(DEMO_STACK.resolve())
    assert viewer.dims.nsteps[0] == 40
    assert viewer.dims.axis_labels == ("t", "y", "x")


def test_layers_stay_lazy_in_the_viewer(make_napari_viewer, qtbot, monkeypatch):
    from deathtrack.io import Movie

    reads = []
    original = Movie.read

    def counting_read(self, role_or_index, t):
        reads.append(t)
        return original(self, role_or_index, t)

    monkeypatch.setattr(Movie, "read", counting_read)
    _lazy.close_all()
    viewer = make_napari_viewer()
    viewer.open_sample("deathtrack", "demo")
    qtbot.wait(100)
    # 5 sampled frames per channel for the contrast, then the frame on screen
    assert len(reads) <= 3 * (5 + 2)
    n = len(reads)
    viewer.dims.set_current_step(0, 30)
    qtbot.wait(100)
    assert 0 < len(reads) - n <= 3  # one frame per channel
    assert set(reads[n:]) == {30}


def test_viewer_opens_a_results_folder_with_the_plugin(make_napari_viewer, demo_results):
    viewer = make_napari_viewer()
    viewer.open(str(demo_results), plugin="deathtrack")
    kinds = {layer.name: type(layer).__name__ for layer in viewer.layers}
    assert kinds["cells (demo)"] == "Image"
    assert kinds["cells labels (demo)"] == "Labels"
    assert kinds["cells tracks (demo)"] == "Tracks"
    assert kinds["deaths (demo)"] == "Points"
    points = viewer.layers["deaths (demo)"]
    n_events = len(pd.read_csv(demo_results / "events.csv"))
    assert (points.features["offset"] == 0).sum() == n_events
    # hidden at first (outlines once a deathtrack panel is open: napari's Labels has no
    # contour argument for readers)
    labels = viewer.layers["cells labels (demo)"]
    assert not labels.visible
    _review(viewer, None)
    assert labels.contour >= 1
    # labels and image share the same grid: the world extents agree
    np.testing.assert_allclose(labels.extent.world, viewer.layers["cells (demo)"].extent.world)


def test_reader_returns_none_for_junk_in_the_viewer_too(tmp_path):
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"\x00" * 64)
    assert napari_get_reader(str(junk)) is None
    assert napari_get_reader(str(tmp_path / "nothing")) is None


# -- Analyze panel ----------------------------------------------------------------------


def test_analyze_runs_the_demo_and_adds_the_result_layers(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    import deathtrack.report
    from deathtrack.errors import ResultsLockedError
    from deathtrack.io import results_lock

    write_report = deathtrack.report.write_report
    locked_while_reporting = []

    def report_and_check_the_lock(*args, **kwargs):
        try:  # as `deathtrack run` does, the run holds the folder's lock over its report
            with results_lock(tmp_path):
                locked_while_reporting.append(False)
        except ResultsLockedError:
            locked_while_reporting.append(True)
        return write_report(*args, **kwargs)

    monkeypatch.setattr(deathtrack.report, "write_report", report_and_check_the_lock)
    viewer = make_napari_viewer()
    viewer.open_sample("deathtrack", "demo")
    widget = _analyze(viewer, qtbot)
    assert widget.stack == DEMO_STACK.resolve()
    assert widget.role_combos["cells"].currentData() == 0
    assert widget.role_combos["immune"].currentData() == 1
    assert widget.role_combos["dye"].currentData() == 2
    assert widget.pixel_size.value() == pytest.approx(0.65)
    assert widget.interval.value() == pytest.approx(120.0)
    # the demo ships inside the package: its results never go there
    out_default = Path(widget.out_dir.text())
    assert out_default == default_output_dir(DEMO_STACK) == Path.home() / "deathtrack_results"
    widget.out_dir.setText(str(tmp_path))

    seen = []
    widget._relay.progressed.connect(lambda stage, done, total: seen.append((stage, done)))
    widget.run_button.click()
    assert widget.is_running
    assert not widget.run_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=RUN_TIMEOUT_MS)

    assert widget.last_result is not None, widget.status.text()
    assert "Done" in widget.status.text()
    assert ("segment", 40) in seen and ("report", 0) in seen
    out = tmp_path / "demo"
    # the same folder as `deathtrack run`, report included
    for name in ("events.csv", "run.json", "tracks.csv", "labels_cells.tif", "report.html"):
        assert (out / name).is_file(), name
    assert "deathtrack report: demo" in (out / "report.html").read_text()
    assert locked_while_reporting == [True]
    assert not (tmp_path / ".deathtrack.lock.json").exists()  # released: the holder is gone
    qtbot.waitUntil(
        lambda: not widget.loader.busy and "deaths (demo)" in layer_names(viewer), timeout=30_000
    )
    names = layer_names(viewer)
    # the stack layers are reused, the results added once
    assert names.count("cells (demo)") == 1
    assert {"cells labels (demo)", "immune labels (demo)", "cells tracks (demo)",
            "deaths (demo)"} <= set(names)  # fmt: skip
    deaths = viewer.layers["deaths (demo)"]
    assert (deaths.features["offset"] == 0).sum() == widget.last_result.counts["n_events"]
    # the deaths layer is not the active one and cannot be edited
    assert viewer.layers.selection.active is not deaths
    assert not deaths.editable
    assert widget.run_button.isEnabled()


def test_cancel_stops_a_run_and_adds_nothing(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample("deathtrack", "demo")
    widget = _analyze(viewer, qtbot)
    widget.out_dir.setText(str(tmp_path))
    frames = []

    def cancel_after_two(stage, done, total):
        frames.append(done)
        if done == 2:
            widget.cancel_button.click()

    widget._relay.progressed.connect(cancel_after_two)
    widget.run()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=RUN_TIMEOUT_MS)
    assert "Cancelled" in widget.status.text()
    assert widget.last_result is None
    assert max(frames) < 40
    assert not (tmp_path / "demo" / "run.json").exists()
    assert layer_names(viewer) == DEMO_LAYERS
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()


def test_analyze_shows_config_errors_as_text(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("deathtrack", "demo")
    widget = _analyze(viewer, qtbot)
    widget.param_widgets["segment.cells.min_area_um2"].setValue(500.0)
    widget.param_widgets["segment.cells.max_area_um2"].setValue(100.0)
    widget.run()
    assert not widget.is_running
    text = widget.status.text()
    assert "max_area_um2 (100.0) must be larger than min_area_um2 (500.0)" in text
    assert "Traceback" not in text

    widget.param_widgets["segment.cells.max_area_um2"].setValue(5000.0)
    widget.param_widgets["segment.cells.noise_k"].setValue(0.0)
    assert widget.build_config() is None
    assert "noise_k" in widget.status.text() and "greater than 0" in widget.status.text()

    widget.param_widgets["segment.cells.noise_k"].setValue(5.0)
    widget.pixel_size.setValue(0.0)
    assert widget.build_config() is None
    assert "Pixel size unknown" in widget.status.text()

    widget.pixel_size.setValue(0.65)
    widget.role_combos["cells"].setCurrentIndex(0)  # "—"
    assert widget.build_config() is None
    assert "target cells" in widget.status.text()


def test_config_round_trips_through_the_panel(make_napari_viewer, qtbot, tmp_path):
    from deathtrack.config import PipelineConfig, apply_overrides, save_config

    viewer = make_napari_viewer()
    viewer.open_sample("deathtrack", "demo")
    widget = _analyze(viewer, qtbot)
    channels = {"cells": 0, "immune": 1, "dye": 2}
    cfg = apply_overrides(
        PipelineConfig(),
        {
            "input.channels": channels,
            "segment.cells.noise_k": 4.5,
            "segment.cells.max_area_um2": 3000.0,
            "track.immune.max_speed_um_per_min": 12.0,
            "death.uncertain_margin": 0.2,
            "segment.workers": 2,
            "segment.cells.smooth_sigma_um": 1.1,  # not in the form: kept from the file
        },
    )
    path = save_config(cfg, tmp_path / "exp.toml")
    assert widget.load_config(path)
    assert widget.param_widgets["segment.cells.noise_k"].value() == pytest.approx(4.5)
    assert widget.build_config() == cfg
    # a value changed in the form wins over the file's
    widget.param_widgets["death.uncertain_margin"].setValue(0.1)
    assert widget.build_config().death.uncertain_margin == pytest.approx(0.1)
    assert widget.build_config().segment.cells.smooth_sigma_um == pytest.approx(1.1)


# -- Review panel -----------------------------------------------------------------------


def _open_review(make_napari_viewer, qtbot, folder, **kwargs):
    viewer = make_napari_viewer(**kwargs)
    viewer.open(str(folder), plugin="deathtrack")
    widget = _review(viewer, qtbot)
    qtbot.waitUntil(lambda: widget.review is not None, timeout=10_000)
    assert widget.review.folder == folder.resolve()
    return viewer, widget


def _events_in_table_order(results: Path) -> list[int]:
    before = pd.read_csv(results / "events.csv")
    return before.sort_values([col.FRAME, col.EVENT_ID], kind="stable")[col.EVENT_ID].tolist()


def test_review_shortcuts_label_three_events_and_reload_shows_them(
    make_napari_viewer, qtbot, results
):
    before = pd.read_csv(results / "events.csv")
    viewer, widget = _open_review(make_napari_viewer, qtbot, results)
    widget.reviewer.setText("ada")
    widget.autosave.setChecked(False)
    assert widget.table.rowCount() == len(before)
    widget.table.setFocus()
    widget.table.selectRow(0)
    first = widget.current_event
    for key in (Qt.Key.Key_N, Qt.Key.Key_A, Qt.Key.Key_X):
        qtbot.keyClick(widget.table, key)
    assert widget.review.dirty
    widget.save_button.click()
    _wait_saved(qtbot, widget)

    saved = pd.read_csv(results / "events.csv")
    order = _events_in_table_order(results)
    assert order[0] == first
    labels = dict(zip(saved[col.EVENT_ID], saved["reviewed_mode"]))
    assert [labels[i] for i in order[:3]] == ["necroptotic", "apoptotic", "not_death"]
    assert all(pd.isna(labels[i]) for i in order[3:])
    assert (saved[saved[col.EVENT_ID].isin(order[:3])]["reviewer"] == "ada").all()
    pd.testing.assert_series_equal(saved[col.MODE], before[col.MODE])
    pd.testing.assert_series_equal(saved[col.P_NECROPTOTIC], before[col.P_NECROPTOTIC])
    # the layer shows the reviewed call on every marker of the event
    features = viewer.layers["deaths (demo)"].features
    mine = features[features[col.EVENT_ID] == order[0]]
    assert set(mine["reviewed_mode"]) == {"necroptotic"} and len(mine) > 1
    assert set(mine["call"]) == {"necroptotic"}

    # a colleague reloads the folder with the reader
    layers = {kw["name"]: kw for _, kw, _ in napari_get_reader(str(results))(str(results))}
    reloaded = layers["deaths (demo)"]["features"]
    reloaded = reloaded[reloaded["offset"] == 0].set_index(col.EVENT_ID)
    assert [reloaded.loc[i, "reviewed_mode"] for i in order[:3]] == [
        "necroptotic",
        "apoptotic",
        "not_death",
    ]
    assert list(reloaded[col.MODE]) == list(before[col.MODE])


def test_selecting_an_event_jumps_to_its_frame_and_centres_it(make_napari_viewer, qtbot, results):
    viewer, widget = _open_review(make_napari_viewer, qtbot, results)
    events = pd.read_csv(results / "events.csv")
    target = events.iloc[len(events) // 2]
    widget.select_event(int(target[col.EVENT_ID]))
    # the viewer follows the selection in the next turn of the event loop
    assert widget.current_event == int(target[col.EVENT_ID])
    qtbot.waitUntil(lambda: viewer.dims.current_step[0] == int(target[col.FRAME]), timeout=10_000)
    camera = viewer.scene.camera
    assert camera.center[-2:] == pytest.approx((target[col.Y_UM], target[col.X_UM]), abs=1e-3)
    assert camera.zoom == pytest.approx(min(viewer.canvas.size) / widget.field_um)
    # the strip is read in the background: a row per channel (cells, dye), a crop per time
    _wait_strip(qtbot, widget)
    data = widget.strip.data
    assert [role for role, _ in data.rows] == ["cells", "dye"]
    assert all(len(crops) == len(data.frames) for _, crops in data.rows)
    assert data.title.startswith(f"#{int(target[col.EVENT_ID])}")
    # next / previous keys
    row = widget.table.currentRow()
    qtbot.keyClick(widget.table, Qt.Key.Key_Period)
    assert widget.table.currentRow() == row + 1
    qtbot.keyClick(widget.table, Qt.Key.Key_Comma)
    assert widget.table.currentRow() == row
    # the neighbours were prepared while this one was shown: stepping shows them at once
    qtbot.waitUntil(lambda: not widget._strip_jobs, timeout=10_000)
    next_id = widget.table.item(row + 1, 0).data(Qt.ItemDataRole.UserRole)
    assert next_id in widget._strips  # prepared ahead
    qtbot.keyClick(widget.table, Qt.Key.Key_J)
    qtbot.waitUntil(lambda: widget.strip.data.event_id == next_id, timeout=1000)
    assert widget.strip.data.rows


def test_a_death_with_no_track_is_shown_reviewed_and_saved(make_napari_viewer, qtbot, results):
    """A death only the dye showed has an empty track_id in events.csv: the review selects
    it, shows its crops and saves its label like any other."""
    events = pd.read_csv(results / "events.csv")
    target = int(events[col.EVENT_ID].iloc[0])
    events[col.TRACK_ID] = events[col.TRACK_ID].astype("Int64")
    events.loc[events[col.EVENT_ID] == target, col.TRACK_ID] = pd.NA
    events.to_csv(results / "events.csv", index=False)
    _viewer, widget = _open_review(make_napari_viewer, qtbot, results)
    widget.select_event(target)
    _wait_strip(qtbot, widget)
    assert [role for role, _ in widget.strip.data.rows] == ["cells", "dye"]
    assert widget.strip.data.title.startswith(f"#{target}")
    qtbot.keyClick(widget.table, Qt.Key.Key_N)
    _wait_saved(qtbot, widget)
    assert _saved_label(results, target) == "necroptotic"
    saved = pd.read_csv(results / "events.csv")
    assert saved.loc[saved[col.EVENT_ID] == target, col.TRACK_ID].isna().all()


def test_crops_are_a_fixed_size_in_um_and_outside_the_image_is_background(
    make_napari_viewer, qtbot, results
):
    from napari_deathtrack._strip import CROP_UM

    _, widget = _open_review(make_napari_viewer, qtbot, results)
    widget.table.selectRow(0)
    _wait_strip(qtbot, widget)
    crops = [c for _, row in widget.strip.data.rows for c in row if c is not None]
    side = crops[0].shape[0]
    assert side == 2 * round(CROP_UM / 0.65 / 2) + 1
    # the strip is drawn with Qt: no matplotlib figure is made for it
    assert not hasattr(widget, "figure")
    # an event at the image border: its crops have background (black), not white, outside
    from napari_deathtrack._strip import crop, to_rgb

    frame = np.full((30, 30), 500.0, np.float32)
    out = to_rgb(crop(frame, 2.0, 2.0, 10, fill=100.0), (100.0, 900.0), "gray")
    assert (out[:5, :5] == 0).all() and (out[-5:, -5:] > 0).all()


def test_table_sorts_by_call_and_shows_the_confidence_of_the_call(
    make_napari_viewer, qtbot, results
):
    _, widget = _open_review(make_napari_viewer, qtbot, results)
    events = widget.review.events.set_index(col.EVENT_ID)
    for r in range(widget.table.rowCount()):
        event_id = widget.table.item(r, 0).data(Qt.ItemDataRole.UserRole)
        mode, p = events.loc[event_id, col.MODE], events.loc[event_id, col.P_NECROPTOTIC]
        text = widget.table.item(r, 3).text()
        if mode == col.APOPTOTIC:
            assert text == f"apoptotic {1 - p:.2f}"
        elif mode == col.NECROPTOTIC:
            assert text == f"necroptotic {p:.2f}"
    widget.table.sortByColumn(3, Qt.SortOrder.AscendingOrder)
    modes = [widget.table.item(r, 3).text().split()[0] for r in range(widget.table.rowCount())]
    assert modes == sorted(modes)


def test_add_missed_death_by_clicking_in_the_viewer(make_napari_viewer, qtbot, results, MouseEvent):
    viewer, widget = _open_review(make_napari_viewer, qtbot, results)
    n = len(widget.review)
    viewer.dims.set_current_step(0, 12)
    widget.add_button.click()
    assert widget._on_viewer_click in viewer.mouse_drag_callbacks
    event = MouseEvent(type="mouse_press", position=(12.0, 65.0, 32.5))
    for callback in list(viewer.mouse_drag_callbacks):
        if callback == widget._on_viewer_click:
            callback(viewer, event)
    assert not widget.add_button.isChecked()
    assert widget._on_viewer_click not in viewer.mouse_drag_callbacks
    assert len(widget.review) == n + 1
    deaths = viewer.layers["deaths (demo)"]
    assert (deaths.features["offset"] == 0).sum() == n + 1
    new = widget.review.events.iloc[-1]
    assert widget.current_event == int(new[col.EVENT_ID])
    assert (new[col.FRAME], new[col.Y], new[col.X]) == pytest.approx((12, 100.0, 50.0))
    assert pd.isna(new[col.MODE]) and new["reviewed_mode"] == "uncertain"
    qtbot.keyClick(widget.table, Qt.Key.Key_N)  # autosave is on
    _wait_saved(qtbot, widget)
    saved = pd.read_csv(results / "events.csv")
    assert saved.iloc[-1]["reviewed_mode"] == "necroptotic"
    assert pd.isna(saved.iloc[-1][col.MODE])
    # undo twice: the label, then the added death itself (on disk too)
    widget.undo()
    widget.undo()
    _wait_saved(qtbot, widget)
    assert len(pd.read_csv(results / "events.csv")) == n
    assert (deaths.features["offset"] == 0).sum() == n


def test_retrain_reports_too_few_reviewed_events(make_napari_viewer, qtbot, results):
    _, widget = _open_review(make_napari_viewer, qtbot, results)
    widget.table.selectRow(0)
    qtbot.keyClick(widget.table, Qt.Key.Key_A)
    assert widget.retrain()
    qtbot.waitUntil(lambda: widget.retrain_worker is None, timeout=30_000)
    text = widget.status.text()
    assert "Too few reviewed events to retrain" in text
    assert "1 apoptotic and 0 necroptotic" in text


def test_retrain_reclassifies_and_the_next_run_uses_its_classifier(
    make_napari_viewer, qtbot, results
):
    viewer, widget = _open_review(make_napari_viewer, qtbot, results)
    analyze = _analyze(viewer, qtbot)
    modes = widget.review.events[col.MODE].tolist()
    if min(modes.count(col.APOPTOTIC), modes.count(col.NECROPTOTIC)) < 3:
        pytest.skip("the demo run has fewer than 3 calls of a mode")
    widget.advance.setChecked(False)
    keys = {col.APOPTOTIC: Qt.Key.Key_A, col.NECROPTOTIC: Qt.Key.Key_N}
    for event_id, mode in zip(widget.review.event_ids(), modes):
        widget.select_event(event_id)
        qtbot.keyClick(widget.table, keys.get(mode, Qt.Key.Key_U))
    assert widget.retrain()
    qtbot.waitUntil(lambda: widget.retrain_worker is None, timeout=30_000)
    assert "re-classified" in widget.status.text()
    model = results / "classifier.json"
    assert model.is_file()
    _wait_saved(qtbot, widget)
    saved = pd.read_csv(results / "events.csv")
    assert saved[col.P_NECROPTOTIC].notna().all()
    # the Analyze panel uses it from now on
    assert analyze.classifier.text() == str(model)
    cfg = analyze.build_config()
    assert cfg.death.classifier == str(model)


def test_review_says_when_there_is_no_recruitment_table(make_napari_viewer, qtbot, results):
    (results / "recruitment.csv").unlink(missing_ok=True)
    _, widget = _open_review(make_napari_viewer, qtbot, results)
    assert "No recruitment.csv" in widget.status.text()
    assert "No recruitment.csv" in widget.plot.note
    widget.table.selectRow(0)  # the strip still shows the crops
    _wait_strip(qtbot, widget)


def test_re_running_into_a_reviewed_folder_keeps_the_review(make_napari_viewer, qtbot, results):
    viewer, review = _open_review(make_napari_viewer, qtbot, results)
    review.reviewer.setText("ada")
    review.table.selectRow(0)
    first = review.current_event
    qtbot.keyClick(review.table, Qt.Key.Key_X)  # autosave writes events.csv
    _wait_saved(qtbot, review)
    analyze = _analyze(viewer, qtbot)
    assert analyze.stack == DEMO_STACK.resolve()  # the results' stack layers are the source
    analyze.out_dir.setText(str(results.parent))
    analyze.run()
    qtbot.waitUntil(lambda: not analyze.is_running, timeout=RUN_TIMEOUT_MS)
    assert analyze.last_result is not None, analyze.status.text()
    assert "kept 1 of 1 reviewed labels" in analyze.status.text()
    saved = pd.read_csv(results / "events.csv")
    assert saved.loc[saved[col.EVENT_ID] == first, "reviewed_mode"].tolist() == ["not_death"]
    # the review panel follows the new layers and shows the kept label
    qtbot.waitUntil(lambda: not analyze.loader.busy, timeout=30_000)
    qtbot.waitUntil(
        lambda: review.review is not None and review.table.rowCount() > 0, timeout=30_000
    )
    assert review.review.event(first)["reviewed_mode"] == "not_death"
    assert layer_names(viewer).count("deaths (demo)") == 1


# -- keys, undo, layers ------------------------------------------------------------------


def _press(qtbot, widget, key, modifier=Qt.KeyboardModifier.NoModifier) -> None:
    qtbot.keyClick(widget, key, modifier)
    qtbot.wait(10)


def test_review_keys_work_after_clicking_the_canvas_the_layer_list_and_the_crop_strip(
    make_napari_viewer, qtbot, results
):
    viewer, widget = _open_review(make_napari_viewer, qtbot, results, show=True)
    widget.advance.setChecked(False)
    order = _events_in_table_order(results)
    widget.select_event(order[0])
    _wait_strip(qtbot, widget)
    qt_viewer = viewer.window._qt_viewer
    canvas = qt_viewer.canvas.native
    layer_list = qt_viewer.layers
    deaths = viewer.layers["deaths (demo)"]

    # the canvas, with an image layer active (Image binds X itself)
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton)
    _press(qtbot, canvas, Qt.Key.Key_X)
    assert widget.review.event(order[0])["reviewed_mode"] == "not_death"
    _press(qtbot, canvas, Qt.Key.Key_J)
    assert widget.current_event == order[1]

    # the layer list, after clicking the deaths layer in it (it becomes the active layer)
    viewer.layers.selection.active = deaths
    qtbot.mouseClick(layer_list.viewport(), Qt.MouseButton.LeftButton)
    viewer.layers.selection.active = deaths
    _press(qtbot, layer_list, Qt.Key.Key_N)
    assert widget.review.event(order[1])["reviewed_mode"] == "necroptotic"
    _press(qtbot, layer_list, Qt.Key.Key_K)
    assert widget.current_event == order[0]

    # the crop strip
    qtbot.mouseClick(widget.strip, Qt.MouseButton.LeftButton)
    _press(qtbot, widget.strip, Qt.Key.Key_U)
    assert widget.review.event(order[0])["reviewed_mode"] == "uncertain"
    _press(qtbot, widget.strip, Qt.Key.Key_Period)
    assert widget.current_event == order[1]
    _press(qtbot, widget.strip, Qt.Key.Key_Backspace)  # clear
    assert pd.isna(widget.review.event(order[1])["reviewed_mode"])


def test_a_on_the_canvas_neither_selects_nor_deletes_a_ring(make_napari_viewer, qtbot, results):
    viewer, widget = _open_review(make_napari_viewer, qtbot, results, show=True)
    widget.advance.setChecked(False)
    deaths = viewer.layers["deaths (demo)"]
    n_points = len(deaths.data)
    widget.select_event(_events_in_table_order(results)[0])
    viewer.layers.selection.active = deaths  # the worst case: the rings' own layer
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton)
    for key, mod in (
        (Qt.Key.Key_A, Qt.KeyboardModifier.NoModifier),
        (Qt.Key.Key_A, Qt.KeyboardModifier.ShiftModifier),
        (Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier),
        (Qt.Key.Key_Delete, Qt.KeyboardModifier.NoModifier),
        (Qt.Key.Key_Backspace, Qt.KeyboardModifier.NoModifier),
        (Qt.Key.Key_1, Qt.KeyboardModifier.NoModifier),
    ):
        _press(qtbot, canvas, key, mod)
        assert deaths.selected_data == set(), key
        assert len(deaths.data) == n_points, key
    # A labelled the event instead; the layer cannot be edited by mode keys either
    assert deaths.mode == "pan_zoom" and not deaths.editable
    viewer.dims.set_current_step(0, 3)  # napari re-enables editing on a data change: not ours
    deaths.data = deaths.data
    assert not deaths.editable


def test_undo_restores_the_previous_label_on_disk(make_napari_viewer, qtbot, results):
    viewer, widget = _open_review(make_napari_viewer, qtbot, results, show=True)
    widget.advance.setChecked(False)
    event_id = _events_in_table_order(results)[0]
    widget.select_event(event_id)
    canvas = viewer.window._qt_viewer.canvas.native
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton)
    _press(qtbot, canvas, Qt.Key.Key_N)
    _wait_saved(qtbot, widget)
    assert _saved_label(results, event_id) == "necroptotic"
    _press(qtbot, canvas, Qt.Key.Key_A)
    _wait_saved(qtbot, widget)
    assert _saved_label(results, event_id) == "apoptotic"
    _press(qtbot, canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    _wait_saved(qtbot, widget)
    assert _saved_label(results, event_id) == "necroptotic"
    _press(qtbot, canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    _wait_saved(qtbot, widget)
    assert _saved_label(results, event_id) is None
    _press(
        qtbot,
        canvas,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    _wait_saved(qtbot, widget)
    assert _saved_label(results, event_id) == "necroptotic"
    assert "saved" in widget.save_state.text()


def _layer_style(layer) -> tuple[pd.DataFrame, np.ndarray]:
    features = layer.features[[col.EVENT_ID, "reviewed_mode", "call", "label"]].copy()
    return features.astype({c: str for c in ("reviewed_mode", "call", "label")}), np.array(
        layer.border_color
    )


def _expected_style(widget) -> tuple[pd.DataFrame, np.ndarray]:
    """What a full restyle of the deaths layer gives for the table as it is now."""
    from napari_deathtrack import _layers

    style = _layers.marker_style(widget.review.events, widget._layer_markers())
    features = style["features"][[col.EVENT_ID, "reviewed_mode", "call", "label"]]
    return features.astype({c: str for c in ("reviewed_mode", "call", "label")}), style[
        "border_color"
    ]


def test_a_label_restyles_only_its_markers_and_the_layer_follows_label_and_undo(
    make_napari_viewer, qtbot, results
):
    viewer, widget = _open_review(make_napari_viewer, qtbot, results)
    widget.advance.setChecked(False)
    deaths = viewer.layers["deaths (demo)"]
    event_id = _events_in_table_order(results)[0]
    widget.select_event(event_id)
    mine = (deaths.features[col.EVENT_ID] == event_id).to_numpy()
    assert mine.sum() > 1  # markers from onset to a few frames after death
    features_before, border_before = _layer_style(deaths)
    emitted = {"features": 0, "border_color": 0}
    deaths.events.features.connect(
        lambda e: emitted.__setitem__("features", 1 + emitted["features"])
    )
    deaths.events.border_color.connect(
        lambda e: emitted.__setitem__("border_color", 1 + emitted["border_color"])
    )

    qtbot.waitUntil(lambda: not widget._follow_pending, timeout=5_000)
    frame_changes = []
    viewer.dims.events.current_step.connect(frame_changes.append)
    widget.label_current("necroptotic")
    qtbot.waitUntil(lambda: not widget._layer_update_pending, timeout=5_000)
    assert frame_changes == []  # a label (without "next after label") stays on its frame
    features, border = _layer_style(deaths)
    # only this event's markers changed: ring colour (opacity kept) and text
    pd.testing.assert_frame_equal(features[~mine], features_before[~mine])
    np.testing.assert_array_equal(border[~mine], border_before[~mine])
    assert set(features.loc[mine, "reviewed_mode"]) == {"necroptotic"}
    assert set(features.loc[mine, "call"]) == {"necroptotic"}
    assert all("necroptotic (reviewed)" in t for t in features.loc[mine, "label"])
    orange = _layers_colour("necroptotic")
    np.testing.assert_allclose(border[mine, :3], np.tile(orange, (mine.sum(), 1)))
    np.testing.assert_array_equal(border[mine, 3], border_before[mine, 3])
    # in place: napari was told once about the colours, never given a new features table
    assert emitted == {"features": 0, "border_color": 1}
    # what napari draws as text is the new label
    assert all("necroptotic (reviewed)" in t for t in np.asarray(deaths.text.values)[mine])
    visual = viewer.window._qt_viewer.canvas.layer_to_visual[deaths]
    shown = [t for t in np.atleast_1d(visual.node.text.text) if t.startswith(f"#{event_id} ")]
    assert shown and all("necroptotic (reviewed)" in t for t in shown)
    # and the layer is what a full restyle of the table would give
    expected_features, expected_border = _expected_style(widget)
    pd.testing.assert_frame_equal(features.reset_index(drop=True), expected_features)
    np.testing.assert_allclose(border, expected_border)

    widget.undo()
    qtbot.waitUntil(lambda: not widget._layer_update_pending, timeout=5_000)
    features, border = _layer_style(deaths)
    pd.testing.assert_frame_equal(features, features_before)
    np.testing.assert_allclose(border, border_before)
    _wait_saved(qtbot, widget)


def _layers_colour(mode: str) -> np.ndarray:
    from matplotlib.colors import to_rgb

    from napari_deathtrack._layers import MODE_COLORS

    return np.array(to_rgb(MODE_COLORS[mode]), dtype=np.float32)


def test_stepping_to_an_event_on_the_frame_shown_leaves_the_frame_alone(
    make_napari_viewer, qtbot, results
):
    viewer, widget = _open_review(make_napari_viewer, qtbot, results)
    first = _events_in_table_order(results)[0]
    widget.select_event(first)
    frame = int(widget.review.event(first)[col.FRAME])
    qtbot.waitUntil(lambda: viewer.dims.current_step[0] == frame, timeout=5_000)
    # a second death on the same frame, elsewhere
    ev = widget.review.event(first)
    widget.add_missed_at((frame, (float(ev[col.Y]) + 40) * 0.65, (float(ev[col.X]) + 40) * 0.65))
    qtbot.waitUntil(lambda: not widget._follow_pending, timeout=5_000)
    widget.select_event(first)
    qtbot.waitUntil(lambda: not widget._follow_pending, timeout=5_000)
    centre = tuple(viewer.scene.camera.center)
    changes = []
    viewer.dims.events.point.connect(lambda e: changes.append(e))
    viewer.dims.events.current_step.connect(lambda e: changes.append(e))
    widget.select_event(int(widget.review.events.iloc[-1][col.EVENT_ID]))
    qtbot.waitUntil(lambda: tuple(viewer.scene.camera.center) != centre, timeout=5_000)
    assert changes == []  # no new slice of the layers: only the camera moved
    assert viewer.dims.current_step[0] == frame


def test_labelling_never_reorders_the_table_a_header_click_does(make_napari_viewer, qtbot, results):
    _, widget = _open_review(make_napari_viewer, qtbot, results)
    widget.advance.setChecked(False)
    widget.autosave.setChecked(False)
    header = widget.table.horizontalHeader()
    header.setSortIndicator(5, Qt.SortOrder.AscendingOrder)  # by the reviewed label
    order = [widget.table.item(r, 0).data(Qt.ItemDataRole.UserRole) for r in range(5)]
    widget.table.selectRow(3)
    qtbot.keyClick(widget.table, Qt.Key.Key_A)  # "apoptotic" would sort first
    qtbot.keyClick(widget.table, Qt.Key.Key_Period)
    qtbot.keyClick(widget.table, Qt.Key.Key_N)
    now = [widget.table.item(r, 0).data(Qt.ItemDataRole.UserRole) for r in range(5)]
    assert now == order  # the rows stayed where the reviewer saw them
    assert widget.table.item(3, 5).text() == "apoptotic"
    assert widget.current_event == order[4]
    # a click on the header sorts, and the selection stays on its event
    qtbot.mouseClick(
        header.viewport(),
        Qt.MouseButton.LeftButton,
        pos=QPoint(header.sectionViewportPosition(5) + 5, header.height() // 2),
    )
    assert header.sortIndicatorSection() == 5
    labels = [widget.table.item(r, 5).text() for r in range(widget.table.rowCount())]
    assert labels in (sorted(labels, key=lambda t: t or "~"),
                      sorted(labels, key=lambda t: t or "~", reverse=True))  # fmt: skip
    assert widget.current_event == order[4]


def test_status_and_save_state_keep_their_size_and_autosave_waits_for_the_redraw(
    make_napari_viewer, qtbot, results, monkeypatch
):
    from napari_deathtrack import _review

    writes = []
    original = _review._write

    def counting_write(*args):
        writes.append(args[-1])
        return original(*args)

    monkeypatch.setattr(_review, "_write", counting_write)
    _, widget = _open_review(make_napari_viewer, qtbot, results, show=True)
    height = widget.status.height()
    order = _events_in_table_order(results)
    widget.select_event(order[0])
    # three quick labels: the panel's layout does not move, one write follows them
    for key in (Qt.Key.Key_A, Qt.Key.Key_N, Qt.Key.Key_X):
        qtbot.keyClick(widget.table, key)
        assert widget.status.height() == height
        assert not widget.is_saved
    _wait_saved(qtbot, widget)
    assert len(writes) == 1
    assert [_saved_label(results, i) for i in order[:3]] == [
        "apoptotic",
        "necroptotic",
        "not_death",
    ]
    assert widget.save_state.text() == "all labels saved"
    assert "3 reviewed" in widget.save_state.toolTip()
    # the next save says the same (nothing to repaint); the time and count are in the tip
    texts = []
    set_text = widget.save_state.setText
    monkeypatch.setattr(widget.save_state, "setText", lambda t: (texts.append(t), set_text(t)))
    qtbot.keyClick(widget.table, Qt.Key.Key_U)
    _wait_saved(qtbot, widget)
    assert texts == [] and len(writes) == 2
    assert widget.save_state.text() == "all labels saved"
    assert "4 reviewed" in widget.save_state.toolTip()
    # a message too long for the status lines makes room for itself
    widget.show_message("a long explanation " * 40)
    assert widget.status.height() > height
    widget.show_message("short")
    assert widget.status.height() == height
    # closing the panel right after a label writes it at once
    qtbot.keyClick(widget.table, Qt.Key.Key_A)
    widget.hide()
    assert not widget._autosave_timer.isActive()
    _wait_saved(qtbot, widget)
    assert len(writes) == 3
    # without autosave the panel says there is something to save
    widget.show()
    widget.autosave.setChecked(False)
    qtbot.keyClick(widget.table, Qt.Key.Key_N)
    assert widget.save_state.text().startswith("unsaved changes")


def test_a_label_is_not_written_while_a_run_holds_the_folder(make_napari_viewer, qtbot, results):
    from deathtrack.io import results_lock

    _viewer, widget = _open_review(make_napari_viewer, qtbot, results)
    widget.advance.setChecked(False)
    event_id = _events_in_table_order(results)[0]
    widget.select_event(event_id)
    before = (results / "events.csv").read_bytes()
    with results_lock(results.parent, command="deathtrack run (another)"):
        widget.label_current("necroptotic")
        qtbot.waitUntil(lambda: widget.save_error is not None, timeout=10_000)
        assert (results / "events.csv").read_bytes() == before
    assert "deathtrack run (another)" in widget.save_error
    assert not widget.is_saved  # the label is kept in the panel, not lost
    widget.save()
    _wait_saved(qtbot, widget)
    assert _saved_label(results, event_id) == "necroptotic"


def test_review_keys_are_napari_actions_listed_in_the_shortcut_preferences(
    make_napari_viewer, qtbot, results
):
    from napari._qt.widgets.qt_keyboard_settings import ShortcutEditor
    from napari.utils.action_manager import action_manager

    _open_review(make_napari_viewer, qtbot, results)
    for name in ("deathtrack:label_apoptotic", "deathtrack:next_event", "deathtrack:undo_label"):
        assert name in action_manager._actions
    editor = ShortcutEditor()
    qtbot.addWidget(editor)
    listed = editor.key_bindings_strs[editor.VIEWER_KEYBINDINGS]
    assert "deathtrack:label_apoptotic" in listed
    assert "deathtrack:clear_label" in listed


def test_two_results_folders_of_the_same_name_stay_apart(make_napari_viewer, qtbot, results):
    other = results.parent / "second run" / results.name
    shutil.copytree(results, other)
    viewer, widget = _open_review(make_napari_viewer, qtbot, results)
    assert widget.open_results(other)
    qtbot.waitUntil(lambda: not widget.loader.busy, timeout=30_000)
    names = layer_names(viewer)
    assert "deaths (demo)" in names and "deaths (second run/demo)" in names
    labels = [widget.source_combo.itemText(i) for i in range(widget.source_combo.count())]
    assert labels == ["demo", "second run/demo"]


def test_a_loaded_session_is_frozen_for_the_gc_and_thawed_when_a_layer_goes(
    make_napari_viewer, qtbot, results
):
    import gc

    viewer, _widget = _open_review(make_napari_viewer, qtbot, results)
    # full collections skip the session's objects while a folder is reviewed
    qtbot.waitUntil(lambda: gc.get_freeze_count() > 0, timeout=10_000)
    viewer.layers.remove("deaths (demo)")
    # the removed layer's reference cycles can be collected again
    assert gc.get_freeze_count() == 0


def test_with_both_panels_docked_the_analyze_form_is_not_squeezed(
    make_napari_viewer, qtbot, results
):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    viewer.open_sample("deathtrack", "demo")
    analyze = _analyze(viewer, qtbot)
    review = _review(viewer, qtbot)
    qtbot.wait(50)
    # the second panel is a tab beside the first: each has the whole height
    from napari_deathtrack._docking import dock_of, raise_panel

    raise_panel(analyze)
    qtbot.wait(50)
    assert dock_of(review) in viewer.window._qt_window.tabifiedDockWidgets(dock_of(analyze))
    assert analyze.scroll.viewport().height() >= analyze.scroll.minimumHeight() - 40
    for field in (analyze.out_dir, analyze.classifier):
        assert field.width() >= field.minimumWidth()


def test_calibration_missing_from_the_file_is_asked_for(make_napari_viewer, qtbot, tmp_path):
    import tifffile

    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((6, 32, 32), np.uint16))
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="deathtrack")
    assert layer_names(viewer) == ["cells (plain)"]  # one channel: the target cells
    widget = _analyze(viewer, qtbot)
    assert widget.stack == path.resolve()
    assert widget.pixel_size.value() == 0.0 and widget.pixel_size.text() == "unknown"
    assert "pixel size not in the file" in widget.cal_source.text()
    widget.run()
    assert not widget.is_running
    assert "Pixel size unknown" in widget.status.text()
    widget.pixel_size.setValue(0.5)
    widget.interval.setValue(60.0)
    cfg = widget.build_config()
    assert (cfg.input.pixel_size_um, cfg.input.interval_s) == (0.5, 60.0)
    assert cfg.input.channels == {"cells": 0}


@pytest.mark.parametrize(
    "error",
    ["StackReadError", "CalibrationError", "NoSignalError", "NoCellsError", "ResultsLockedError"],
)
def test_a_failing_run_shows_the_reason_not_a_traceback(
    make_napari_viewer, qtbot, tmp_path, monkeypatch, error
):
    import deathtrack.errors
    import deathtrack.pipeline

    def broken(stack, *args, **kwargs):
        raise getattr(deathtrack.errors, error)(
            f"{stack}: cannot read frame 3; the file looks truncated"
        )

    monkeypatch.setattr(deathtrack.pipeline, "run_stack", broken)
    viewer = make_napari_viewer()
    viewer.open_sample("deathtrack", "demo")
    widget = _analyze(viewer, qtbot)
    widget.out_dir.setText(str(tmp_path))
    widget.run()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=30_000)
    assert "cannot read frame 3; the file looks truncated" in widget.status.text()
    assert "Traceback" not in widget.status.text()
    assert widget.last_result is None and widget.run_button.isEnabled()


def test_analyze_holds_the_lock_of_the_results_folder(make_napari_viewer, qtbot, tmp_path):
    from deathtrack.io import results_lock

    viewer = make_napari_viewer()
    viewer.open_sample("deathtrack", "demo")
    widget = _analyze(viewer, qtbot)
    widget.out_dir.setText(str(tmp_path))
    # another run (here: this test, as `deathtrack run` would) holds the folder
    with results_lock(tmp_path, command="deathtrack run demo.ome.tif --out elsewhere"):
        widget.run()
        qtbot.waitUntil(lambda: not widget.is_running, timeout=30_000)
    text = widget.status.text()
    assert "another deathtrack run is writing into this results folder" in text
    assert "deathtrack run demo.ome.tif --out elsewhere" in text and "Traceback" not in text
    assert widget.last_result is None and not (tmp_path / "demo").exists()


def test_review_of_a_z_stack_crops_the_dying_cells_own_z_range(
    make_napari_viewer, qtbot, hand_3d_results
):
    """A 3D results folder in the review panel: the strip (made in a worker) projects the
    dying cell's own z-range, so a brighter cell at another depth stays out of it, and the
    strip says which slices it shows."""
    viewer, widget = _open_review(make_napari_viewer, qtbot, hand_3d_results)
    widget.select_event(1)
    _wait_strip(qtbot, widget)
    # the viewer shows the death's frame, at the slice of the dying cell's centre (z = 3)
    assert viewer.dims.axis_labels[:2] == ("t", "z")
    qtbot.waitUntil(lambda: tuple(viewer.dims.current_step[:2]) == (2, 3), timeout=5000)
    data = widget.strip.data
    assert data.z_text == "crops: z 1-5 of 12 (max, 10 µm)"
    cells = dict(data.rows)["cells"]
    shown = [c for c in cells if c is not None]
    assert shown and all(c.max() > 0 for c in shown)
    # the display range is the cells layer's; the dying cell (1000) is well below the
    # brighter cell at another depth (5000), which would fill the crop's middle
    lo, hi = widget._stack()[2][0].limits
    assert hi >= 4000
    assert all(c.max() <= 255 * (1000 - lo) / (hi - lo) + 1 for c in shown)
    # a death added by hand on the slice shown: it keeps that z (and its z in µm)
    viewer.dims.set_point(1, 8 * 2.0)  # slice 8 (2 µm per slice)
    new_id = widget.add_missed_at((1.0, 16.0, 12.0, 12.0))
    added = widget.review.event(new_id)
    assert added[col.FRAME] == 1 and added[col.Z] == 8 and added[col.Z_UM] == 16.0
    assert (added[col.Y], added[col.X]) == (24.0, 24.0)
    _wait_strip(qtbot, widget)
    assert widget.strip.data.z_text.startswith("crops: z 6-10 of 12")  # 4.5 µm: the median
