"""The napari plugin's reader, layer data and review table, without a viewer or Qt.

These run without napari: the plugin's reader and review model are plain
numpy / pandas code.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from deathtrack import columns as col
from deathtrack.cli import DEMO_STACK
from napari_deathtrack import _lazy
from napari_deathtrack._layers import FADE_FRAMES, results_layer_data, stack_layer_data
from napari_deathtrack._reader import napari_get_reader
from napari_deathtrack._review_model import EventReview, ReviewError

AUTOMATIC = [col.EVENT_ID, col.TRACK_ID, col.FRAME, col.Y, col.X, col.MODE, col.P_NECROPTOTIC]


@pytest.fixture(scope="module")
def demo_results(tmp_path_factory) -> Path:
    """The pipeline's results on the demo movie (run once for the module, ~5 s)."""
    from deathtrack.config import PipelineConfig
    from deathtrack.pipeline import run_stack

    if not DEMO_STACK.exists():
        pytest.skip(f"{DEMO_STACK} is missing")
    out = run_stack(DEMO_STACK, PipelineConfig(), tmp_path_factory.mktemp("demo"), progress=False)
    yield out.out_dir
    _lazy.close_all()


@pytest.fixture
def results(demo_results, tmp_path) -> Path:
    """A private copy of the demo results (tests that write to it do not disturb others)."""
    dst = tmp_path / demo_results.name
    shutil.copytree(demo_results, dst)
    return dst


def by_name(layers):
    return {kwargs["name"]: (data, kwargs, kind) for data, kwargs, kind in layers}


# -- importing -------------------------------------------------------------------


def test_importing_deathtrack_and_the_plugin_does_not_import_napari_or_qt():
    code = (
        "import sys\n"
        "import deathtrack, deathtrack.config, deathtrack.io, deathtrack.pipeline\n"
        "import deathtrack.classify, deathtrack.cli\n"
        "import napari_deathtrack, napari_deathtrack._reader, napari_deathtrack._layers\n"
        "import napari_deathtrack._review_model, napari_deathtrack._sample_data\n"
        "gui = sorted(m for m in sys.modules\n"
        "             if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2',\n"
        "                                    'PySide6', 'magicgui', 'vispy'))\n"
        "print(','.join(gui))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == ""


def test_npe2_validates_the_manifest_and_its_python_names():
    pytest.importorskip("npe2")
    # the manifest belongs to the distribution "deathtrack" (npe2 validates by distribution
    # name or manifest path; "napari_deathtrack" is the module, not a distribution)
    out = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "deathtrack", "--imports"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "valid" in out.stdout


# -- reader: what it refuses -----------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda d: d / "missing.tif", id="missing file"),
        pytest.param(lambda d: _write(d / "notes.txt", b"not an image"), id="text file"),
        pytest.param(lambda d: _write(d / "junk.tif", b"garbage" * 20), id="junk .tif"),
        pytest.param(lambda d: _write(d / "empty.tif", b""), id="empty .tif"),
        pytest.param(lambda d: _write(d / "trunc.tif", b"II*\x00\x08\x00\x00\x00"), id="cut TIFF"),
        pytest.param(lambda d: _mkdir(d / "empty"), id="empty folder"),
        pytest.param(lambda d: _write(d / "x" / "a.csv", b"a,b\n1,2\n").parent, id="csv folder"),
        pytest.param(lambda d: [d / "a.tif", d / "b.tif"], id="two paths"),
    ],
)
def test_reader_returns_none_for_what_it_cannot_read(tmp_path, make):
    assert napari_get_reader(make(tmp_path)) is None


def test_reader_refuses_a_results_folder_without_run_json(results, caplog):
    (results / "run.json").unlink()
    assert napari_get_reader(str(results)) is None
    # it was picked for a folder that looks like its own: it says why it refuses
    assert "without a readable run.json" in caplog.text


def test_reader_refuses_a_4d_tiff_without_axes_and_says_why(tmp_path, caplog):
    import tifffile

    from napari_deathtrack._reader import refusal_reason

    path = tmp_path / "ambiguous.tif"
    # tifffile records the shape but not which axis is time or channel
    tifffile.imwrite(path, np.zeros((3, 5, 16, 16), np.uint16), photometric="minisblack")
    assert napari_get_reader(str(path)) is None
    reason = refusal_reason(path)
    assert "cannot tell which axis is which" in reason
    assert "Plugins > deathtrack > Analyze" in reason  # what to do about it in napari
    assert f"deathtrack cannot open ambiguous.tif: {reason}" in caplog.text


def test_reader_opens_a_results_folder_from_its_run_json(demo_results):
    reader = napari_get_reader(str(demo_results / "run.json"))
    assert reader is not None
    names = [kw["name"] for _, kw, _ in reader(str(demo_results / "run.json"))]
    assert "deaths (demo)" in names


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


# -- reader: stacks --------------------------------------------------------------


def test_stack_opens_as_lazy_channel_layers_named_by_role_and_scaled_in_um(monkeypatch):
    from deathtrack.io import Movie, open_stack

    reads = []
    original = Movie.read

    def counting_read(self, role_or_index, t):
        reads.append(t)
        return original(self, role_or_index, t)

    monkeypatch.setattr(Movie, "read", counting_read)
    _lazy.close_all()
    reader = napari_get_reader(str(DEMO_STACK))
    assert reader is not None
    layers = by_name(reader(str(DEMO_STACK)))
    # named by role, then by the stack they come from
    assert list(layers) == ["cells (demo)", "immune (demo)", "dye (demo)"]
    layers = {name.split(" (")[0]: v for name, v in layers.items()}
    # contrast limits come from 5 sampled frames per channel, never the whole movie
    assert len(reads) <= 5 * 3
    with open_stack(DEMO_STACK) as movie:
        n_frames = movie.n_frames
        expected = movie.read(1, 10)
    for name, cmap in (("cells", "gray"), ("immune", "green"), ("dye", "magenta")):
        data, kwargs, kind = layers[name]
        assert kind == "image"
        assert isinstance(data, _lazy.FrameArray)
        assert data.shape == (n_frames, 224, 224) and data.ndim == 3
        assert data.dtype == expected.dtype and data.size == n_frames * 224 * 224
        assert kwargs["colormap"] == cmap
        assert kwargs["blending"] == "additive"
        assert kwargs["scale"] == pytest.approx((1.0, 0.65, 0.65))
        lo, hi = kwargs["contrast_limits"]
        assert lo < hi
        assert kwargs["metadata"]["deathtrack"]["interval_s"] == 120.0
    # indexing reads the frames asked for, one at a time, nothing else
    _lazy.close_all()
    n = len(reads)
    np.testing.assert_array_equal(np.asarray(layers["immune"][0][10]), expected)
    assert reads[n:] == [10]
    np.testing.assert_array_equal(layers["immune"][0][10, 5:9, -3:], expected[5:9, -3:])
    np.testing.assert_array_equal(layers["immune"][0][-1], layers["immune"][0][n_frames - 1])
    assert layers["immune"][0][8:11].shape == (3, 224, 224)
    # no other frame was read, and frame 10 came from the cache
    assert set(reads[n + 1 :]) == {8, 9, n_frames - 1}
    np.testing.assert_array_equal(layers["immune"][0][..., 7], layers["immune"][0][:, :, 7])
    with pytest.raises(IndexError):
        layers["immune"][0][n_frames]


def test_stack_without_a_cells_channel_name_opens_with_channel_names(tmp_path):
    from deathtrack.io import write_ome_tiff

    frames = np.random.default_rng(0).integers(0, 1000, (4, 2, 32, 32), dtype=np.uint16)
    path = write_ome_tiff(
        tmp_path / "gfp.ome.tif",
        frames,
        channel_names=["GFP", "DRAQ7"],
        pixel_size_um=0.5,
        interval_s=60,
    )
    layers = by_name(napari_get_reader(str(path))(str(path)))
    assert list(layers) == ["GFP (gfp)", "DRAQ7 (gfp)"]
    assert layers["GFP (gfp)"][1]["scale"] == pytest.approx((1.0, 0.5, 0.5))
    assert layers["GFP (gfp)"][1]["metadata"]["deathtrack"]["roles_known"] is False
    # the run's roles name the layers when they are given
    named = by_name(stack_layer_data(path, channels={"cells": "GFP", "dye": 1}, label="run 2"))
    assert list(named) == ["cells (run 2)", "dye (run 2)"]


def test_ome_zarr_opens_lazily_with_its_calibration(tmp_path):
    import zarr

    data = np.random.default_rng(1).integers(0, 500, (3, 2, 16, 24), dtype=np.uint16)
    path = tmp_path / "movie.ome.zarr"
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    root.attrs.update(
        {
            "multiscales": [
                {
                    "version": "0.4",
                    "axes": [
                        {"name": "t", "type": "time", "unit": "second"},
                        {"name": "c", "type": "channel"},
                        {"name": "y", "type": "space", "unit": "micrometer"},
                        {"name": "x", "type": "space", "unit": "micrometer"},
                    ],
                    "datasets": [
                        {
                            "path": "0",
                            "coordinateTransformations": [
                                {"type": "scale", "scale": [90.0, 1.0, 0.4, 0.4]}
                            ],
                        }
                    ],
                }
            ],
            "omero": {"channels": [{"label": "cells"}, {"label": "immune"}]},
        }
    )
    root.create_array("0", shape=data.shape, chunks=(1, 1, 16, 24), dtype=data.dtype)[:] = data
    reader = napari_get_reader(str(path))
    assert reader is not None
    layers = by_name(reader(str(path)))
    assert list(layers) == ["cells (movie)", "immune (movie)"]
    assert layers["immune (movie)"][1]["scale"] == pytest.approx((1.0, 0.4, 0.4))
    np.testing.assert_array_equal(np.asarray(layers["immune (movie)"][0][2]), data[2, 1])


# -- reader: results folders -----------------------------------------------------


def test_results_folder_opens_as_image_labels_tracks_and_events(demo_results):
    import tifffile

    reader = napari_get_reader(str(demo_results))
    assert reader is not None
    layers = by_name(reader(str(demo_results)))
    assert {"cells (demo)", "immune (demo)", "dye (demo)", "cells labels (demo)",
            "immune labels (demo)", "cells tracks (demo)", "immune tracks (demo)",
            "deaths (demo)"} <= set(layers)  # fmt: skip
    layers = {name.removesuffix(" (demo)"): v for name, v in layers.items()}
    scales = {name: kw["scale"] for name, (_, kw, _) in layers.items()}
    assert all(s == pytest.approx((1.0, 0.65, 0.65)) for s in scales.values()), scales

    labels, kwargs, kind = layers["cells labels"]
    assert kind == "labels"
    with tifffile.TiffFile(demo_results / "labels_cells.tif") as tif:
        assert isinstance(labels, _lazy.FrameArray) and labels.shape[0] == len(tif.pages)
    # outlines, hidden at first: the cells stay visible under them
    assert kwargs["metadata"]["deathtrack"]["contour"] >= 1 and kwargs["visible"] is False
    np.testing.assert_array_equal(
        np.asarray(labels[7]), tifffile.imread(demo_results / "labels_cells.tif", key=7)
    )

    tracks = pd.read_csv(demo_results / "tracks.csv")
    data, kwargs, kind = layers["cells tracks"]
    assert kind == "tracks"
    cells = tracks[tracks[col.POPULATION] == col.CELLS]
    assert data.shape == (len(cells), 4)
    assert set(data[:, 0].astype(int)) == set(cells[col.TRACK_ID])
    lineage = pd.read_csv(demo_results / "lineage.csv")
    for parent, child in zip(lineage[col.PARENT_ID], lineage[col.CHILD_ID]):
        assert parent in kwargs["graph"][child]

    events = pd.read_csv(demo_results / "events.csv")
    points, kwargs, kind = layers["deaths"]
    assert kind == "points"
    features = kwargs["features"]
    for c in (col.EVENT_ID, col.MODE, col.P_NECROPTOTIC, "reviewed_mode", "offset", "label"):
        assert c in features.columns
    # a marker on every frame from onset to FADE_FRAMES after death, on the dying cell
    at_death = (features["offset"] == 0).to_numpy()
    assert at_death.sum() == len(events)
    np.testing.assert_allclose(
        points[at_death], events[[col.FRAME, col.Y, col.X]].to_numpy(float), atol=1.0
    )
    for ev in events.itertuples():
        mine = features[col.EVENT_ID] == ev.event_id
        frames = points[mine.to_numpy(), 0]
        onset = ev.onset_frame if ev.onset_frame == ev.onset_frame else ev.frame
        assert frames.min() == min(onset, ev.frame)
        assert frames.max() == min(ev.frame + FADE_FRAMES, 39)
    assert list(features.loc[at_death, col.MODE]) == list(events[col.MODE])
    assert set(features["reviewed_mode"]) == {""}
    # colours follow the call: every necroptotic ring has the same colour, not an apoptotic's
    colors = kwargs["border_color"][at_death]
    necro = (features.loc[at_death, col.MODE] == col.NECROPTOTIC).to_numpy()
    assert necro.any() and (~necro).any()
    assert np.allclose(colors[necro], colors[necro][0])
    assert not np.allclose(colors[~necro][0], colors[necro][0])
    # opacity rises to 1 at death and fades after it
    alpha = kwargs["border_color"][:, 3]
    assert np.all(alpha[at_death] == 1.0)
    assert np.all(alpha[(features["offset"] > 0).to_numpy()] < 1.0)
    # the text says the call with its own confidence (1 - p for an apoptotic call)
    first = events.iloc[0]
    conf = (
        first[col.P_NECROPTOTIC]
        if first[col.MODE] == col.NECROPTOTIC
        else 1 - first[col.P_NECROPTOTIC]
    )
    text = features.loc[at_death, "label"].iloc[0]
    assert text.startswith(f"#{first.event_id} {first[col.MODE]} {conf:.2f}")


def test_results_folder_whose_stack_is_gone_still_opens_its_results(results):
    run = json.loads((results / "run.json").read_text())
    run["stack"] = str(results.parent / "elsewhere" / "gone.ome.tif")
    (results / "run.json").write_text(json.dumps(run))
    names = [kw["name"] for _, kw, _ in results_layer_data(results)]
    assert "cells (demo)" not in names
    assert {"cells labels (demo)", "cells tracks (demo)", "deaths (demo)"} <= set(names)


# -- review table ----------------------------------------------------------------


def _as_text(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_review_labels_are_saved_beside_the_untouched_automatic_calls(results):
    before = _as_text(results / "events.csv")
    review = EventReview(results)
    ids = review.event_ids()[:3]
    for event_id, label in zip(ids, ("necroptotic", "apoptotic", "not_death")):
        review.set_review(event_id, label, reviewer="ada")
    review.save()
    assert not list(results.glob(".events.csv*")), "a temporary file was left behind"
    after = _as_text(results / "events.csv")
    pd.testing.assert_frame_equal(after[before.columns], before)  # every automatic cell as text
    assert list(after["reviewed_mode"][:3]) == ["necroptotic", "apoptotic", "not_death"]
    assert set(after["reviewed_mode"][3:]) == {""}
    assert set(after["reviewer"][:3]) == {"ada"}
    for stamp in after["reviewed_at"][:3]:
        assert datetime.fromisoformat(stamp).tzinfo is not None
    # and the reader shows them
    layers = by_name(results_layer_data(results, include_image=False))
    features = layers["deaths (demo)"][1]["features"]
    features = features[features["offset"] == 0]
    assert list(features["reviewed_mode"][:3]) == ["necroptotic", "apoptotic", "not_death"]
    assert list(features[col.MODE]) == list(before[col.MODE])
    assert features["label"].iloc[0].startswith(f"#{ids[0]} necroptotic (reviewed)")


def test_a_missed_death_is_a_new_row_with_an_empty_mode(results):
    before = _as_text(results / "events.csv")
    review = EventReview(results)
    new_id = review.add_missed(12, 100.0, 50.0, reviewer="ada")
    review.save()
    after = _as_text(results / "events.csv")
    assert new_id == int(before[col.EVENT_ID].astype(int).max()) + 1
    pd.testing.assert_frame_equal(after[before.columns].iloc[:-1], before)
    row = after.iloc[-1]
    assert row[col.MODE] == "" and row[col.P_NECROPTOTIC] == "" and row[col.TRACK_ID] == ""
    assert row[col.FRAME] == "12" and float(row[col.Y_UM]) == pytest.approx(65.0)
    assert row["reviewed_mode"] == "uncertain"


def test_review_refuses_an_unknown_label(results):
    review = EventReview(results)
    with pytest.raises(ReviewError, match="reviewed label 'dead' is not one of"):
        review.set_review(1, "dead", reviewer="ada")


def test_retraining_with_too_few_reviews_says_how_many_more_are_needed(results):
    review = EventReview(results)
    review.set_review(1, "apoptotic", reviewer="ada")
    review.set_review(2, "not_death", reviewer="ada")
    with pytest.raises(ReviewError, match=r"reviewed 1 apoptotic and 0 necroptotic\. Review "
                       r"2 more apoptotic, 3 more necroptotic"):  # fmt: skip
        review.retrain()


def _every_call_reviewed_as_called(results) -> tuple[EventReview, list[str]]:
    """The demo results with every automatic call reviewed as it was called, and the calls."""
    review = EventReview(results)
    auto = review.events[col.MODE].tolist()
    if min(auto.count(col.APOPTOTIC), auto.count(col.NECROPTOTIC)) < 3:
        pytest.skip("the demo run has fewer than 3 calls of a mode")
    for event_id, mode in zip(review.event_ids(), auto):
        review.set_review(event_id, mode, reviewer="ada")
    return review, auto


def test_retraining_reclassifies_every_detected_event_and_saves_the_model(results):
    from deathtrack.classify import load_model

    review, auto = _every_call_reviewed_as_called(results)
    review.add_missed(5, 20.0, 20.0, reviewer="ada", label="necroptotic")  # no features
    result = review.retrain()
    assert result.n_train == {
        col.APOPTOTIC: auto.count(col.APOPTOTIC),
        col.NECROPTOTIC: auto.count(col.NECROPTOTIC),
    }
    assert result.n_classified == len(auto)
    p = review.events[col.P_NECROPTOTIC].to_numpy(float)
    assert np.isnan(p[-1]) and np.isfinite(p[:-1]).all()
    assert load_model(result.model_path).n_train == result.n_train
    review.save()
    saved = pd.read_csv(results / "events.csv")
    assert list(saved["reviewed_mode"][: len(auto)]) == auto


def test_reviews_are_carried_over_to_the_events_of_a_re_run(results):
    from napari_deathtrack._review_model import carry_over_reviews, reviewed_rows

    review = EventReview(results)
    ids = review.event_ids()
    review.set_review(ids[0], "necroptotic", reviewer="ada", when="2025-01-02T03:04:05+00:00")
    review.set_review(ids[1], "not_death", reviewer="ada")
    review.set_review(ids[2], "apoptotic", reviewer="ada")
    missed = review.add_missed(9, 30.0, 40.0, reviewer="ada", label="apoptotic")
    review.save()
    reviews = reviewed_rows(results)
    assert len(reviews) == 4

    # a re-run: new events.csv without review columns, other ids, one event gone
    rerun = pd.read_csv(results / "events.csv").iloc[: len(ids)]
    rerun = rerun.drop(columns=["reviewed_mode", "reviewer", "reviewed_at"])
    gone = rerun[col.EVENT_ID] == ids[2]
    rerun = rerun[~gone].iloc[::-1].assign(**{col.EVENT_ID: lambda d: range(1, len(d) + 1)})
    rerun.to_csv(results / "events.csv", index=False)

    kept, unmatched = carry_over_reviews(results, reviews)
    assert (kept, unmatched) == (3, 1)
    after = pd.read_csv(results / "events.csv")
    old = reviews.set_index(col.EVENT_ID)
    for event_id, label in ((ids[0], "necroptotic"), (ids[1], "not_death")):
        track, frame = old.loc[event_id, col.TRACK_ID], old.loc[event_id, col.FRAME]
        row = after[(after[col.TRACK_ID] == track) & (after[col.FRAME] == frame)].iloc[0]
        assert row["reviewed_mode"] == label and row["reviewer"] == "ada"
    assert after.loc[after[col.FRAME] == 9, "reviewed_mode"].tolist() == ["apoptotic"]
    stamp = after.loc[after["reviewed_mode"] == "necroptotic", "reviewed_at"].iloc[0]
    assert stamp == "2025-01-02T03:04:05+00:00"  # the time of the review, not of the re-run
    lost = pd.read_csv(results / "reviews_unmatched.csv")
    assert lost[col.EVENT_ID].tolist() == [ids[2]]
    assert missed not in lost[col.EVENT_ID].tolist()


def test_labels_cleared_and_added_deaths_are_undone_and_redone(results):
    review = EventReview(results)
    first, second = review.event_ids()[:2]
    review.set_review(first, "necroptotic", reviewer="ada")
    review.set_review(first, "apoptotic", reviewer="ada")
    review.clear_review(first)
    added = review.add_missed(5, 20.0, 30.0, reviewer="ada")
    review.set_review(second, "not_death", reviewer="ada")
    n = len(review)
    assert review.undo() == second and pd.isna(review.event(second)["reviewed_mode"])
    assert review.undo() == added and len(review) == n - 1
    assert review.undo() == first and review.event(first)["reviewed_mode"] == "apoptotic"
    assert review.undo() == first and review.event(first)["reviewed_mode"] == "necroptotic"
    assert review.redo() == first and review.event(first)["reviewed_mode"] == "apoptotic"
    assert review.redo() == first and pd.isna(review.event(first)["reviewed_mode"])
    assert review.redo() == added and review.event(added)["reviewed_mode"] == "uncertain"
    assert review.can_redo
    review.set_review(first, "uncertain", reviewer="ada")  # a new edit drops the redo stack
    assert not review.can_redo
    review.save()
    saved = pd.read_csv(results / "events.csv")
    assert len(saved) == n and saved.iloc[-1][col.EVENT_ID] == added


def test_fit_retrain_leaves_the_table_alone(results):
    from napari_deathtrack._review_model import fit_retrain

    review, auto = _every_call_reviewed_as_called(results)
    before = review.events.copy()
    plan = fit_retrain(review.events, review.uncertain_margin())
    pd.testing.assert_frame_equal(review.events, before)
    assert len(plan.p_necroptotic) == len(plan.event_ids) == len(auto)
    assert set(plan.modes) <= {col.APOPTOTIC, col.NECROPTOTIC, col.UNCERTAIN}
