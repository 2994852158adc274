"""TrackMate XML export: parse the written file back and check it against known answers.

The element and attribute names checked here are those TrackMate's own reader
(``fiji.plugin.trackmate.io.TmXmlReader`` / ``TmXmlKeys``) looks up.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from deathtrack.export import export_trackmate

PX = 0.5  # µm per pixel
DT = 60.0  # s per frame
# what Java's Double.valueOf accepts (and Python's "nan"/"inf" are not)
JAVA_DOUBLE = re.compile(r"^(-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|NaN|-?Infinity)$")
JAVA_INT = re.compile(r"^-?\d+$")


def _table() -> tuple[pd.DataFrame, pd.DataFrame]:
    """cells 1 (frames 0-2) divides into 2 (3, 4) and 3 (3, gap, 5); cells 4 has a gap;
    immune 1 and 2 reuse track ids of the cells population."""
    rows = []

    def add(pop, tid, frames):
        for f in frames:
            y_um, x_um = 10.0 + f, 20.0 + 7.0 * tid + (100.0 if pop == "immune" else 0.0)
            rows.append(
                {
                    "frame": f,
                    "track_id": tid,
                    "population": pop,
                    "t_s": f * DT,
                    "y": y_um / PX,
                    "x": x_um / PX,
                    "y_um": y_um,
                    "x_um": x_um,
                    "area_um2": 100.0 + f,
                    "circularity": 0.8,
                    "solidity": 0.9,
                    "roughness": 0.1,
                    "cells_mean": np.nan if (pop, tid, f) == ("cells", 2, 4) else 50.0 + f,
                    "dye_mean": 5.0,
                    "touches_border": False,
                }
            )

    add("cells", 1, [0, 1, 2])
    add("cells", 2, [3, 4])
    add("cells", 3, [3, 5])
    add("cells", 4, [0, 2, 3])
    add("immune", 1, [0, 1])
    add("immune", 2, [1, 2, 3])
    tracks = pd.DataFrame(rows).sample(frac=1.0, random_state=1)  # order must not matter
    lineage = pd.DataFrame({"parent_id": [1, 1], "child_id": [2, 3], "frame": [3, 3]})
    return tracks, lineage


def _export(tmp_path, tracks=None, lineage=None, **kw):
    if tracks is None:
        tracks, lineage = _table()
    kw.setdefault("pixel_size_um", PX)
    kw.setdefault("interval_s", DT)
    path = export_trackmate(tracks, lineage, tmp_path / "tracks.xml", **kw)
    return path, ET.parse(path).getroot()


def _spots(root) -> dict[int, dict]:
    return {int(s.get("ID")): dict(s.attrib) for s in root.iter("Spot")}


def _key(spot: dict) -> tuple[str, int]:
    return spot["name"], int(spot["FRAME"])


def _edges(root) -> set[tuple[tuple[str, int], tuple[str, int]]]:
    spots = _spots(root)
    return {
        (_key(spots[int(e.get("SPOT_SOURCE_ID"))]), _key(spots[int(e.get("SPOT_TARGET_ID"))]))
        for e in root.iter("Edge")
    }


def _track_members(root) -> dict[int, set[str]]:
    """TrackMate TRACK_ID -> names of the spots its edges touch."""
    spots = _spots(root)
    out = {}
    for track in root.find("Model/AllTracks"):
        ids = {int(e.get(k)) for e in track for k in ("SPOT_SOURCE_ID", "SPOT_TARGET_ID")}
        out[int(track.get("TRACK_ID"))] = {spots[i]["name"] for i in ids}
    return out


# --- structure ------------------------------------------------------------------------------


def test_root_model_and_settings_elements_are_those_trackmate_reads(tmp_path):
    path, root = _export(tmp_path)
    assert path.read_bytes().startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert root.tag == "TrackMate"
    major, minor = (int(v) for v in root.get("version").split(".")[:2])
    assert (major, minor) >= (2, 1)  # TrackMate 7+ refuses older files
    assert [c.tag for c in root] == ["Log", "Model", "Settings", "GUIState"]
    assert root.find("GUIState").get("state") == "ConfigureViews"
    model = root.find("Model")
    assert model.attrib == {"spatialunits": "micron", "timeunits": "sec"}
    assert [c.tag for c in model] == [
        "FeatureDeclarations",
        "AllSpots",
        "AllTracks",
        "FilteredTracks",
    ]
    assert [c.tag for c in model.find("FeatureDeclarations")] == [
        "SpotFeatures",
        "EdgeFeatures",
        "TrackFeatures",
    ]
    settings = root.find("Settings")
    assert [c.tag for c in settings] == [
        "ImageData",
        "BasicSettings",
        "DetectorSettings",
        "InitialSpotFilter",
        "SpotFilterCollection",
        "TrackerSettings",
        "TrackFilterCollection",
        "AnalyzerCollection",
    ]
    assert settings.find("DetectorSettings").get("DETECTOR_NAME") == "MANUAL_DETECTOR"
    assert JAVA_DOUBLE.match(settings.find("DetectorSettings").get("RADIUS"))
    assert settings.find("TrackerSettings").get("TRACKER_NAME") == "MANUAL_TRACKER"
    assert settings.find("InitialSpotFilter").attrib == {
        "feature": "QUALITY",
        "value": "0.0",
        "isabove": "true",
    }
    assert [c.tag for c in settings.find("AnalyzerCollection")] == [
        "SpotAnalyzers",
        "EdgeAnalyzers",
        "TrackAnalyzers",
    ]


def test_every_written_feature_is_declared_and_parses_in_java(tmp_path):
    _, root = _export(tmp_path)
    decl = root.find("Model/FeatureDeclarations")
    dims = {"NONE", "QUALITY", "INTENSITY", "POSITION", "VELOCITY", "LENGTH", "AREA", "TIME"}
    declared = {}
    for group in ("SpotFeatures", "EdgeFeatures", "TrackFeatures"):
        declared[group] = {}
        for f in decl.find(group):
            assert f.tag == "Feature"
            assert set(f.attrib) == {"feature", "name", "shortname", "dimension", "isint"}
            assert f.get("dimension") in dims
            assert f.get("isint") in ("true", "false")
            declared[group][f.get("feature")] = f.get("isint") == "true"
    assert {"AREA", "CIRCULARITY", "SOLIDITY", "MEAN_INTENSITY_CELLS", "MEAN_INTENSITY_DYE"} <= set(
        declared["SpotFeatures"]
    )
    for tag, group, skip in (
        ("Spot", "SpotFeatures", {"ID", "name"}),
        ("Edge", "EdgeFeatures", set()),
        ("Track", "TrackFeatures", {"name"}),
    ):
        elements = list(root.iter(tag))
        assert elements
        for el in elements:
            assert set(el.attrib) - skip == set(declared[group]), tag
            for key, value in el.attrib.items():
                if key in skip:
                    continue
                pattern = JAVA_INT if declared[group][key] else JAVA_DOUBLE
                assert pattern.match(value), (tag, key, value)


# --- spots ----------------------------------------------------------------------------------


def test_spots_are_in_um_and_seconds_with_unique_ids(tmp_path):
    tracks, _ = _table()
    _, root = _export(tmp_path)
    all_spots = root.find("Model/AllSpots")
    assert all_spots.get("nspots") == str(len(tracks))
    spots = _spots(root)
    assert sorted(spots) == list(range(len(tracks)))
    for frame_el in all_spots:
        assert frame_el.tag == "SpotsInFrame"
        assert {s.get("FRAME") for s in frame_el} == {frame_el.get("frame")}
    by_key = {
        (f"{r.population}_{r.track_id}", int(r.frame)): r for r in tracks.itertuples(index=False)
    }
    assert {_key(s) for s in spots.values()} == set(by_key)
    for s in spots.values():
        r = by_key[_key(s)]
        assert float(s["POSITION_X"]) == r.x_um
        assert float(s["POSITION_Y"]) == r.y_um
        assert float(s["POSITION_Z"]) == 0.0
        assert float(s["POSITION_T"]) == r.frame * DT
        assert float(s["RADIUS"]) == pytest.approx(math.sqrt(r.area_um2 / math.pi))
        assert float(s["AREA"]) == r.area_um2
        assert s["QUALITY"] == "1.0" and s["VISIBILITY"] == "1"
        assert int(s["DT_TRACK_ID"]) == r.track_id
        assert int(s["DT_POPULATION"]) == {"cells": 0, "immune": 1}[r.population]
        if np.isnan(r.cells_mean):
            assert s["MEAN_INTENSITY_CELLS"] == "NaN"
        else:
            assert float(s["MEAN_INTENSITY_CELLS"]) == r.cells_mean


def test_missing_area_gets_the_median_radius(tmp_path):
    tracks, lineage = _table()
    tracks.loc[tracks.index[0], "area_um2"] = np.nan
    _, root = _export(tmp_path, tracks, lineage)
    radii = [float(s["RADIUS"]) for s in _spots(root).values()]
    assert all(math.isfinite(r) and r > 0 for r in radii)  # TrackMate needs a radius


# --- links and tracks -----------------------------------------------------------------------


def test_links_bridge_gaps_and_divisions(tmp_path):
    _, root = _export(tmp_path)
    assert _edges(root) == {
        (("cells_1", 0), ("cells_1", 1)),
        (("cells_1", 1), ("cells_1", 2)),
        (("cells_1", 2), ("cells_2", 3)),  # division
        (("cells_1", 2), ("cells_3", 3)),  # division
        (("cells_2", 3), ("cells_2", 4)),
        (("cells_3", 3), ("cells_3", 5)),  # across a gap
        (("cells_4", 0), ("cells_4", 2)),  # across a gap
        (("cells_4", 2), ("cells_4", 3)),
        (("immune_1", 0), ("immune_1", 1)),
        (("immune_2", 1), ("immune_2", 2)),
        (("immune_2", 2), ("immune_2", 3)),
    }


def test_parent_and_daughters_form_one_trackmate_track(tmp_path):
    _, root = _export(tmp_path)
    members = _track_members(root)
    assert sorted(map(sorted, members.values())) == [
        ["cells_1", "cells_2", "cells_3"],
        ["cells_4"],
        ["immune_1"],
        ["immune_2"],
    ]
    tracks = {int(t.get("TRACK_ID")): t.attrib for t in root.iter("Track")}
    assert sorted(tracks) == [0, 1, 2, 3]
    for tid, attrs in tracks.items():
        assert attrs["name"] == f"Track_{tid}"
        assert attrs["TRACK_INDEX"] == str(tid)
    family = next(a for k, a in tracks.items() if "cells_2" in members[k])
    assert family["NUMBER_SPOTS"] == "7"
    assert family["NUMBER_SPLITS"] == "1"
    assert family["NUMBER_GAPS"] == "1"
    assert float(family["TRACK_START"]) == 0.0 and float(family["TRACK_STOP"]) == 5 * DT
    assert {a["DT_POPULATION"] for a in tracks.values()} == {"0", "1"}
    filtered = root.find("Model/FilteredTracks")
    assert [e.tag for e in filtered] == ["TrackID"] * 4
    assert {int(e.get("TRACK_ID")) for e in filtered} == set(tracks)


def test_lineage_rows_that_do_not_fit_are_skipped_with_a_warning(tmp_path, caplog):
    tracks, _ = _table()
    lineage = pd.DataFrame(
        {
            "parent_id": [4, 4, 9, 2],
            "child_id": [2, 1, 2, 2],
            "frame": [3, 0, 3, 3],
        }
    )
    with caplog.at_level(logging.WARNING, logger="deathtrack.export"):
        _, root = _export(tmp_path, tracks, lineage)
    # parent 4 goes on after frame 3? no: it has frames 0, 2, 3 -> last spot before 3 is frame 2
    assert (("cells_4", 2), ("cells_2", 3)) in _edges(root)
    messages = " ".join(caplog.messages)
    assert "parent_id=4 child_id=1: the daughter starts at frame 0" in messages
    assert "parent_id=9 child_id=2: track 9 is not in `tracks`" in messages
    assert "parent_id=2 child_id=2: a track cannot be its own parent" in messages


def test_lineage_with_missing_ids_is_refused(tmp_path):
    tracks, _ = _table()
    lineage = pd.DataFrame({"parent_id": [1.0, np.nan], "child_id": [2, 3], "frame": [3, 3]})
    with pytest.raises(ValueError, match=r"`lineage` has 1 row\(s\) without a numeric"):
        _export(tmp_path, tracks, lineage)


# --- populations, empty tables, settings ----------------------------------------------------


def test_population_filter(tmp_path, caplog):
    tracks, lineage = _table()
    with caplog.at_level(logging.WARNING, logger="deathtrack.export"):
        _, immune = _export(tmp_path, tracks, lineage, population="immune")
    assert not caplog.messages  # the cells lineage does not apply to immune cells
    assert {s["name"] for s in _spots(immune).values()} == {"immune_1", "immune_2"}
    assert immune.find("Model/AllSpots").get("nspots") == "5"
    assert len(list(immune.iter("Track"))) == 2

    _, cells = _export(tmp_path, tracks, lineage, population="cells")
    assert cells.find("Model/AllSpots").get("nspots") == "10"
    assert (("cells_1", 2), ("cells_3", 3)) in _edges(cells)

    with pytest.raises(ValueError, match=r"population='tumour' is not in `tracks`"):
        _export(tmp_path, tracks, lineage, population="tumour")


@pytest.mark.parametrize(
    "empty",
    [
        pd.DataFrame(columns=["frame", "track_id", "population", "y_um", "x_um", "area_um2"]),
        pd.DataFrame(),
    ],
)
def test_empty_table_gives_a_valid_file_with_no_spots(tmp_path, empty):
    lineage = pd.DataFrame(columns=["parent_id", "child_id", "frame"])
    _, root = _export(tmp_path, empty, lineage, shape_tyx=(10, 64, 32))
    assert root.find("Model/AllSpots").get("nspots") == "0"
    assert not list(root.iter("Spot"))
    assert not list(root.find("Model/AllTracks"))
    assert not list(root.find("Model/FilteredTracks"))
    assert root.find("Model/FeatureDeclarations/SpotFeatures") is not None
    image = root.find("Settings/ImageData")
    assert (image.get("nframes"), image.get("height"), image.get("width")) == ("10", "64", "32")


def test_image_data_carries_the_calibration(tmp_path):
    movie = tmp_path / "movies" / "well A1.ome.tif"
    _, root = _export(tmp_path, image_path=movie, shape_tyx=(40, 192, 256))
    image = root.find("Settings/ImageData")
    assert image.attrib == {
        "filename": "well A1.ome.tif",
        "folder": str(movie.parent.resolve()) + os.sep,
        "width": "256",
        "height": "192",
        "nslices": "1",
        "nframes": "40",
        "pixelwidth": "0.5",
        "pixelheight": "0.5",
        "voxeldepth": "1.0",
        "timeinterval": "60.0",
    }
    basic = root.find("Settings/BasicSettings")
    assert (basic.get("xend"), basic.get("yend"), basic.get("tend")) == ("255", "191", "39")


def test_image_size_defaults_to_the_extent_of_the_tracks(tmp_path):
    tracks, lineage = _table()
    _, root = _export(tmp_path, tracks, lineage)
    image = root.find("Settings/ImageData")
    assert image.get("filename") == "" and image.get("folder") == ""
    assert image.get("nframes") == str(tracks["frame"].max() + 1)
    assert image.get("width") == str(int(np.ceil(tracks["x"].max())) + 1)
    assert image.get("height") == str(int(np.ceil(tracks["y"].max())) + 1)


def test_input_tables_are_not_modified(tmp_path):
    tracks, lineage = _table()
    before_t, before_l = tracks.copy(), lineage.copy()
    _export(tmp_path, tracks, lineage)
    pd.testing.assert_frame_equal(tracks, before_t)
    pd.testing.assert_frame_equal(lineage, before_l)


# --- errors ---------------------------------------------------------------------------------


def test_bad_inputs_are_refused_with_the_value(tmp_path):
    tracks, lineage = _table()
    with pytest.raises(ValueError, match=r"`pixel_size_um` must be a number > 0, got 0"):
        _export(tmp_path, tracks, lineage, pixel_size_um=0)
    with pytest.raises(ValueError, match=r"`interval_s` must be a number > 0, got nan"):
        _export(tmp_path, tracks, lineage, interval_s=float("nan"))
    with pytest.raises(ValueError, match=r"`shape_tyx` must be \(T, Y, X\)"):
        _export(tmp_path, tracks, lineage, shape_tyx=(10, 3, 64, 64))
    with pytest.raises(ValueError, match=r"`tracks` lacks column\(s\) \['area_um2'\]"):
        _export(tmp_path, tracks.drop(columns="area_um2"), lineage)
    nan_x = tracks.copy()
    nan_x.loc[nan_x.index[2], "x_um"] = np.nan
    with pytest.raises(ValueError, match=r"`tracks` column 'x_um' has 1 missing or infinite"):
        _export(tmp_path, nan_x, lineage)
    dup = pd.concat([tracks, tracks.iloc[[0]]])
    with pytest.raises(ValueError, match=r"1 duplicate \(population, track_id, frame\) row"):
        _export(tmp_path, dup, lineage)
    assert not (tmp_path / "tracks.xml").exists()


# --- atomic write ---------------------------------------------------------------------------


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    path, _ = _export(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tracks.xml"]
    good = path.read_bytes()

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("deathtrack.export.os.replace", boom)
    tracks, lineage = _table()
    with pytest.raises(OSError, match="disk full"):
        _export(tmp_path, tracks.iloc[:3], lineage)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tracks.xml"]
    assert path.read_bytes() == good  # the previous file is untouched


# --- round trip through the real pipeline ---------------------------------------------------


@pytest.fixture(scope="module")
def pipeline_run(small_movie, tmp_path_factory):
    from deathtrack.config import PipelineConfig
    from deathtrack.pipeline import run_stack

    r = run_stack(
        small_movie["movie"], PipelineConfig(), tmp_path_factory.mktemp("run"), progress=False
    )
    tracks = pd.read_csv(r.out_dir / "tracks.csv")
    lineage = pd.read_csv(r.out_dir / "lineage.csv")
    info = json.loads((r.out_dir / "run.json").read_text())["input"]
    return tracks, lineage, info, small_movie["movie"]


def test_pipeline_tracks_round_trip(tmp_path, pipeline_run, caplog):
    tracks, lineage, info, movie = pipeline_run
    assert len(lineage) and tracks["population"].nunique() == 2  # the test needs both
    cal = info["calibration"]
    t, _, y, x = info["shape"]
    with caplog.at_level(logging.WARNING, logger="deathtrack.export"):
        _, root = _export(
            tmp_path,
            tracks,
            lineage,
            pixel_size_um=cal["pixel_size_um"],
            interval_s=cal["interval_s"],
            image_path=movie,
            shape_tyx=(t, y, x),
        )
    assert not caplog.messages  # every lineage row became a division link
    spots = _spots(root)
    assert root.find("Model/AllSpots").get("nspots") == str(len(tracks))
    assert len(spots) == len(tracks)

    # every deathtrack track: same number of spots, all in one TrackMate track
    written = pd.Series([s["name"] for s in spots.values()]).value_counts().to_dict()
    expected = (tracks["population"] + "_" + tracks["track_id"].astype(str)).value_counts()
    assert written == expected.to_dict()
    members = _track_members(root)
    track_of = {name: k for k, names in members.items() for name in names}
    assert sum(len(v) for v in members.values()) == len(track_of)  # no name in two tracks
    for name, n in expected.items():
        if n > 1:
            assert name in track_of, name
    for r in lineage.itertuples(index=False):
        assert track_of[f"cells_{r.parent_id}"] == track_of[f"cells_{r.child_id}"]

    # NUMBER_SPOTS = the deathtrack tracks it joins; splits = the divisions in it
    for track in root.iter("Track"):
        names = members[int(track.get("TRACK_ID"))]
        assert int(track.get("NUMBER_SPOTS")) == sum(expected[n] for n in names)
        parents = {f"cells_{p}" for p in lineage["parent_id"]} & names
        assert int(track.get("NUMBER_SPLITS")) == len(parents)
    n_links = sum(expected[name] - 1 for name in expected.index) + len(lineage)
    assert len(list(root.iter("Edge"))) == n_links


@pytest.mark.parametrize("case", ["full", "no links", "empty"])
def test_streamed_file_is_what_elementtree_writes_of_it(tmp_path, case):
    """The file is written spot by spot and track by track (memory flat in the movie's
    length); it must be well-formed XML laid out exactly as ElementTree writes the same
    tree, special characters of a population's name included."""
    tracks, lineage = _table()
    tracks["population"] = tracks["population"].replace({"immune": 'T & "NK"\t<cells>'})
    if case == "no links":
        tracks, lineage = tracks[tracks["frame"] == 3], lineage.iloc[:0]
    elif case == "empty":
        tracks, lineage = tracks.iloc[:0], lineage.iloc[:0]
    path, root = _export(tmp_path, tracks, lineage)
    assert len(list(root.iter("Spot"))) == len(tracks)
    if case == "full":
        assert {s.get("name") for s in root.iter("Spot")} >= {'T & "NK"\t<cells>_1'}
        assert len(list(root.iter("Track"))) > 0
    for element in root.iter():  # drop the layout, then lay it out again as ET does
        if len(element):
            element.text = None
        element.tail = None
    ET.indent(root, space="  ")
    again = tmp_path / "again.xml"
    ET.ElementTree(root).write(again, encoding="UTF-8", xml_declaration=True)
    assert path.read_bytes() == again.read_bytes() + b"\n"
