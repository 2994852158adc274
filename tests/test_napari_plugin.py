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

from qtpy.QtCore import Qt  # noqa: E402

from deathtrack import columns as col  # noqa: E402
from deathtrack.cli import DEMO_STACK  # noqa: E402
from napari_deathtrack import _lazy  # noqa: E402
from napari_deathtrack._analyze import AnalyzeWidget  # noqa: E402
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


def _analyze(viewer, qtbot) -> AnalyzeWidget:
    widget = AnalyzeWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Analyze")
    return widget


def _review(viewer, qtbot) -> ReviewWidget:
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Review deaths")
    return widget


# -- sample data and reader ------------------------------------------------------------


def test_sample_data_opens_the_demo_movie_through_the_reader(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("deathtrack", "demo")
    assert layer_names(viewer) == ["cells", "immune", "dye"]
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
    assert kinds["cells"] == "Image"
    assert kinds["cells labels"] == "Labels"
    assert kinds["cells tracks"] == "Tracks"
    assert kinds["deaths"] == "Points"
    points = viewer.layers["deaths"]
    assert len(points.data) == len(pd.read_csv(demo_results / "events.csv"))
    # labels and image share the same grid: the world extents agree
    np.testing.assert_allclose(
        viewer.layers["cells labels"].extent.world, viewer.layers["cells"].extent.world
    )


def test_reader_returns_none_for_junk_in_the_viewer_too(tmp_path):
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"\x00" * 64)
    assert napari_get_reader(str(junk)) is None
    assert napari_get_reader(str(tmp_path / "nothing")) is None


# -- Analyze panel ----------------------------------------------------------------------


def test_analyze_runs_the_demo_and_adds_the_result_layers(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    viewer.open_sample("deathtrack", "demo")
    widget = _analyze(viewer, qtbot)
    assert widget.stack == DEMO_STACK.resolve()
    assert widget.role_combos["cells"].currentData() == 0
    assert widget.role_combos["immune"].currentData() == 1
    assert widget.role_combos["dye"].currentData() == 2
    assert widget.pixel_size.value() == pytest.approx(0.65)
    assert widget.interval.value() == pytest.approx(120.0)
    assert Path(widget.out_dir.text()) == DEMO_STACK.parent / "deathtrack_results"
    widget.out_dir.setText(str(tmp_path))

    seen = []
    widget._relay.progressed.connect(lambda stage, done, total: seen.append((stage, done)))
    widget.run_button.click()
    assert widget.is_running
    assert not widget.run_button.isEnabled()
    qtbot.waitUntil(lambda: not widget.is_running, timeout=RUN_TIMEOUT_MS)

    assert widget.last_result is not None, widget.status.text()
    assert "Done" in widget.status.text()
    assert ("segment", 40) in seen
    out = tmp_path / "demo"
    assert (out / "events.csv").is_file() and (out / "run.json").is_file()
    names = layer_names(viewer)
    # the stack layers are reused, the results added once
    assert names.count("cells") == 1
    assert {"cells labels", "immune labels", "cells tracks", "deaths"} <= set(names)
    assert len(viewer.layers["deaths"].data) == widget.last_result.counts["n_events"]
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
    assert layer_names(viewer) == ["cells", "immune", "dye"]
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


def _open_review(make_napari_viewer, qtbot, folder):
    viewer = make_napari_viewer()
    viewer.open(str(folder), plugin="deathtrack")
    widget = _review(viewer, qtbot)
    assert widget.review is not None
    assert widget.review.folder == folder.resolve()
    return viewer, widget


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
    assert "Saved" in widget.status.text()

    saved = pd.read_csv(results / "events.csv")
    order = before.sort_values([col.FRAME, col.EVENT_ID], kind="stable")[col.EVENT_ID].tolist()
    assert order[0] == first
    labels = dict(zip(saved[col.EVENT_ID], saved["reviewed_mode"]))
    assert [labels[i] for i in order[:3]] == ["necroptotic", "apoptotic", "not_death"]
    assert all(pd.isna(labels[i]) for i in order[3:])
    assert (saved[saved[col.EVENT_ID].isin(order[:3])]["reviewer"] == "ada").all()
    pd.testing.assert_series_equal(saved[col.MODE], before[col.MODE])
    pd.testing.assert_series_equal(saved[col.P_NECROPTOTIC], before[col.P_NECROPTOTIC])
    # the layer shows the reviewed call
    features = viewer.layers["deaths"].features
    assert features.set_index(col.EVENT_ID).loc[order[0], "reviewed_mode"] == "necroptotic"

    # a colleague reloads the folder with the reader
    layers = {kw["name"]: kw for _, kw, _ in napari_get_reader(str(results))(str(results))}
    reloaded = layers["deaths"]["features"].set_index(col.EVENT_ID)
    assert [reloaded.loc[i, "reviewed_mode"] for i in order[:3]] == [
        "necroptotic",
        "apoptotic",
        "not_death",
    ]
    assert list(layers["deaths"]["features"][col.MODE]) == list(before[col.MODE])


def test_selecting_an_event_jumps_to_its_frame_and_centres_it(make_napari_viewer, qtbot, results):
    viewer, widget = _open_review(make_napari_viewer, qtbot, results)
    events = pd.read_csv(results / "events.csv")
    target = events.iloc[len(events) // 2]
    widget.select_event(int(target[col.EVENT_ID]))
    assert viewer.dims.current_step[0] == int(target[col.FRAME])
    camera = viewer.scene.camera
    assert camera.center[-2:] == pytest.approx((target[col.Y_UM], target[col.X_UM]), abs=1e-3)
    assert camera.zoom == pytest.approx(min(viewer.canvas.size) / widget.field_um.value())
    # the strip was drawn: one axes per crop (cells and dye rows) + recruitment, if any
    assert len(widget.figure.axes) >= 7
    # next / previous keys
    row = widget.table.currentRow()
    qtbot.keyClick(widget.table, Qt.Key.Key_Period)
    assert widget.table.currentRow() == row + 1
    qtbot.keyClick(widget.table, Qt.Key.Key_Comma)
    assert widget.table.currentRow() == row


def test_table_sorts_by_p_and_mode(make_napari_viewer, qtbot, results):
    _, widget = _open_review(make_napari_viewer, qtbot, results)
    widget.table.sortByColumn(4, Qt.SortOrder.DescendingOrder)
    p = [float(widget.table.item(r, 4).text()) for r in range(widget.table.rowCount())]
    assert p == sorted(p, reverse=True)
    widget.table.sortByColumn(3, Qt.SortOrder.AscendingOrder)
    modes = [widget.table.item(r, 3).text() for r in range(widget.table.rowCount())]
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
    assert len(viewer.layers["deaths"].data) == n + 1
    new = widget.review.events.iloc[-1]
    assert widget.current_event == int(new[col.EVENT_ID])
    assert (new[col.FRAME], new[col.Y], new[col.X]) == pytest.approx((12, 100.0, 50.0))
    assert pd.isna(new[col.MODE]) and new["reviewed_mode"] == "uncertain"
    qtbot.keyClick(widget.table, Qt.Key.Key_N)  # autosave is on
    saved = pd.read_csv(results / "events.csv")
    assert saved.iloc[-1]["reviewed_mode"] == "necroptotic"
    assert pd.isna(saved.iloc[-1][col.MODE])


def test_retrain_reports_too_few_reviewed_events(make_napari_viewer, qtbot, results):
    _, widget = _open_review(make_napari_viewer, qtbot, results)
    widget.table.selectRow(0)
    qtbot.keyClick(widget.table, Qt.Key.Key_A)
    widget.retrain_button.click()
    text = widget.status.text()
    assert "Too few reviewed events to retrain" in text
    assert "1 apoptotic and 0 necroptotic" in text


def test_retrain_reclassifies_from_the_reviewed_labels(make_napari_viewer, qtbot, results):
    _, widget = _open_review(make_napari_viewer, qtbot, results)
    modes = widget.review.events[col.MODE].tolist()
    if min(modes.count(col.APOPTOTIC), modes.count(col.NECROPTOTIC)) < 3:
        pytest.skip("the demo run has fewer than 3 calls of a mode")
    widget.advance.setChecked(False)
    keys = {col.APOPTOTIC: Qt.Key.Key_A, col.NECROPTOTIC: Qt.Key.Key_N}
    for event_id, mode in zip(widget.review.event_ids(), modes):
        widget.select_event(event_id)
        qtbot.keyClick(widget.table, keys.get(mode, Qt.Key.Key_U))
    assert widget.retrain()
    assert "re-classified" in widget.status.text()
    assert (results / "classifier.json").is_file()
    saved = pd.read_csv(results / "events.csv")
    assert saved[col.P_NECROPTOTIC].notna().all()


def test_review_says_when_there_is_no_recruitment_table(make_napari_viewer, qtbot, results):
    (results / "recruitment.csv").unlink(missing_ok=True)
    _, widget = _open_review(make_napari_viewer, qtbot, results)
    assert "No recruitment.csv" in widget.recruitment_note.text()
    widget.table.selectRow(0)  # the strip still shows the crops
    assert len(widget.figure.axes) >= 7


def test_re_running_into_a_reviewed_folder_keeps_the_review(make_napari_viewer, qtbot, results):
    viewer, review = _open_review(make_napari_viewer, qtbot, results)
    review.reviewer.setText("ada")
    review.table.selectRow(0)
    first = review.current_event
    qtbot.keyClick(review.table, Qt.Key.Key_X)  # autosave writes events.csv
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
    qtbot.waitUntil(lambda: review.review is not None and review.table.rowCount() > 0)
    assert review.review.event(first)["reviewed_mode"] == "not_death"
    assert layer_names(viewer).count("deaths") == 1


def test_calibration_missing_from_the_file_is_asked_for(make_napari_viewer, qtbot, tmp_path):
    import tifffile

    path = tmp_path / "plain.tif"
    tifffile.imwrite(path, np.zeros((6, 32, 32), np.uint16))
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="deathtrack")
    assert layer_names(viewer) == ["cells"]  # one channel: the target cells
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


def test_a_failing_run_shows_the_reason_not_a_traceback(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    import deathtrack.pipeline
    from deathtrack.errors import StackReadError

    def broken(stack, *args, **kwargs):
        raise StackReadError(f"{stack}: cannot read frame 3; the file looks truncated")

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
