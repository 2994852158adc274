"""Export deathtrack tracks to other tools' formats.

:func:`export_trackmate` writes a TrackMate XML file, so that tracks open in
Fiji with *Plugins > Tracking > Load a TrackMate file*: spots with their
positions in µm and times in seconds, links between consecutive spots of a
track (across gaps too), and division links from a parent's last spot to
each daughter's first spot, so a division is one branching TrackMate track.

The file follows what TrackMate's own reader (``TmXmlReader``) needs: every
element it reads without a null check (``ImageData``,
``InitialSpotFilter``, ``SpotFilterCollection``, ``TrackFilterCollection``)
is written; the detector and tracker are TrackMate's *manual* ones, which
need no image to be configured. Numbers are written the way Java's
``Double.valueOf`` parses them (``NaN``, ``Infinity``; never Python's ``nan``).

Examples
--------
>>> import pandas as pd
>>> tracks = pd.DataFrame({"frame": [0, 1], "track_id": [1, 1], "population": ["cells"] * 2,
...                        "y_um": [5.0, 6.0], "x_um": [5.0, 5.0], "area_um2": [80.0, 80.0]})
>>> lineage = pd.DataFrame(columns=["parent_id", "child_id", "frame"])
>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "tracks.xml"
>>> export_trackmate(tracks, lineage, out, pixel_size_um=0.65, interval_s=60).name
'tracks.xml'
"""

from __future__ import annotations

import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import columns as col

logger = logging.getLogger(__name__)

__all__ = ["TRACKMATE_FILE_VERSION", "export_trackmate"]

#: the TrackMate version written in the root element; TrackMate 7 and later load
#: files of version 2.1.0 and above, and read this layout since version 7.
TRACKMATE_FILE_VERSION = "7.11.1"
SPATIAL_UNITS = "micron"
TIME_UNITS = "sec"

#: spot feature DT_POPULATION: index of the population in this tuple (others follow, sorted)
POPULATION_CODES = col.POPULATIONS

# (feature key, name, short name, dimension, isint) as TrackMate declares them. Dimension
# names are those of TrackMate's ``Dimension`` enum that every TrackMate 7 release knows
# (COST and VOLUME are newer and are not used here).
_SPOT_BASE = [
    ("QUALITY", "Quality", "Quality", "QUALITY", False),
    ("POSITION_X", "X", "X", "POSITION", False),
    ("POSITION_Y", "Y", "Y", "POSITION", False),
    ("POSITION_Z", "Z", "Z", "POSITION", False),
    ("POSITION_T", "T", "T", "TIME", False),
    ("FRAME", "Frame", "Frame", "NONE", True),
    ("RADIUS", "Radius", "R", "LENGTH", False),
    ("VISIBILITY", "Visibility", "Visibility", "NONE", True),
]
# deathtrack column -> TrackMate's own 2D shape features of the same meaning
_SPOT_MORPHOLOGY = {
    col.AREA_UM2: ("AREA", "Area", "Area", "AREA", False),
    "perimeter_um": ("PERIMETER", "Perimeter", "Perim.", "LENGTH", False),
    "circularity": ("CIRCULARITY", "Circularity", "Circ.", "NONE", False),
    "solidity": ("SOLIDITY", "Solidity", "Solidity", "NONE", False),
}
_SPOT_DEATHTRACK = [
    ("DT_TRACK_ID", "deathtrack track_id", "DT track", "NONE", True),
    ("DT_POPULATION", "deathtrack population (0 cells, 1 immune)", "DT pop.", "NONE", True),
]
_EDGE_FEATURES = [
    ("SPOT_SOURCE_ID", "Source spot ID", "Source ID", "NONE", True),
    ("SPOT_TARGET_ID", "Target spot ID", "Target ID", "NONE", True),
    ("SPEED", "Speed", "Speed", "VELOCITY", False),
    ("DISPLACEMENT", "Displacement", "Disp.", "LENGTH", False),
    ("EDGE_TIME", "Edge time", "Edge T", "TIME", False),
    ("EDGE_X_LOCATION", "Edge X", "Edge X", "POSITION", False),
    ("EDGE_Y_LOCATION", "Edge Y", "Edge Y", "POSITION", False),
    ("EDGE_Z_LOCATION", "Edge Z", "Edge Z", "POSITION", False),
]
_TRACK_FEATURES = [
    ("TRACK_INDEX", "Track index", "Index", "NONE", True),
    ("TRACK_ID", "Track ID", "ID", "NONE", True),
    ("NUMBER_SPOTS", "Number of spots in track", "N spots", "NONE", True),
    ("NUMBER_GAPS", "Number of gaps", "N gaps", "NONE", True),
    ("NUMBER_SPLITS", "Number of split events", "N splits", "NONE", True),
    ("NUMBER_MERGES", "Number of merge events", "N merges", "NONE", True),
    ("TRACK_DURATION", "Track duration", "Duration", "TIME", False),
    ("TRACK_START", "Track start", "Track start", "TIME", False),
    ("TRACK_STOP", "Track stop", "Track stop", "TIME", False),
    ("DT_POPULATION", "deathtrack population (0 cells, 1 immune)", "DT pop.", "NONE", True),
]

_REQUIRED = [col.FRAME, col.TRACK_ID, col.POPULATION, col.Y_UM, col.X_UM, col.AREA_UM2]
_MEAN_SUFFIX = "_mean"


def export_trackmate(
    tracks: pd.DataFrame,
    lineage: pd.DataFrame | None,
    path: str | Path,
    *,
    pixel_size_um: float,
    interval_s: float,
    image_path: str | Path | None = None,
    shape_tyx: tuple[int, int, int] | None = None,
    population: str | None = None,
) -> Path:
    """Write tracks as a TrackMate XML file (Fiji: *Load a TrackMate file*).

    Parameters
    ----------
    tracks : DataFrame
        deathtrack's tracks table: ``frame, track_id, population, y_um, x_um,
        area_um2`` (``x, y`` in pixels are used for the image size when
        ``shape_tyx`` is not given) and any feature columns. Not modified.
    lineage : DataFrame or None
        ``parent_id, child_id, frame`` (one row per daughter). Its ids are
        ``track_id`` values of the ``cells`` population, unless it has a
        ``population`` column of its own. Rows whose tracks are not exported
        are ignored.
    path
        The ``.xml`` file to write (replaced atomically: a temporary file
        beside it is renamed into place).
    pixel_size_um, interval_s
        Calibration, written to ``ImageData``; ``POSITION_T = frame × interval_s``.
    image_path
        The movie the tracks come from; TrackMate opens it (by absolute path,
        then by file name beside the XML file). Without it TrackMate shows the
        tracks on a blank image. The image's own calibration must be
        ``pixel_size_um`` for the overlay to line up.
    shape_tyx
        ``(T, Y, X)`` of the movie: ``nframes, height, width`` in ``ImageData``.
        Default: from the largest frame and pixel position in ``tracks``.
    population
        Export only this population (default: all rows).

    Returns
    -------
    Path
        ``path``.

    Notes
    -----
    *Spots*: one per row; ``ID`` 0..N-1 in ``population, track_id, frame``
    order; ``name`` is ``<population>_<track_id>`` (e.g. ``cells_12``,
    ``immune_12``): ``track_id`` is unique only within a population, so the
    population prefix keeps the ids of several populations apart. The same
    information is in the integer spot features ``DT_TRACK_ID`` (deathtrack's
    ``track_id``) and ``DT_POPULATION`` (0 = cells, 1 = immune; other names
    follow, sorted), so TrackMate can filter or colour by them. Features:
    ``POSITION_X/Y`` (µm), ``POSITION_Z = 0``, ``POSITION_T`` (s), ``FRAME``,
    ``RADIUS = sqrt(area_um2 / π)`` (µm; the median radius where the area is
    missing), ``QUALITY = 1``, ``VISIBILITY = 1``, and where the columns exist
    ``AREA, PERIMETER, CIRCULARITY, SOLIDITY`` (TrackMate's own shape feature
    keys) and ``MEAN_INTENSITY_<CHANNEL>`` for every ``<channel>_mean``
    column. Missing values are written ``NaN``, as TrackMate writes them.

    *Links*: from each spot to the next frame its track has (a gap is one
    link), and from a parent's last spot to each daughter's first spot (the
    parent's last spot before the daughter's first frame, if a lineage table
    lets the parent go on after dividing).

    *Tracks*: TrackMate tracks are connected components of that graph, so a
    parent and its daughters form one track. They are numbered ``TRACK_ID``
    0..K-1 in the order of their first spot and named ``Track_<TRACK_ID>``;
    all are listed in ``FilteredTracks`` (visible). A deathtrack track of one
    spot and no division link has no link, so TrackMate shows it as a lone
    spot, not as a track (TrackMate tracks need at least one link).

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"frame": [0, 1, 2, 2], "track_id": [1, 1, 2, 3],
    ...                   "population": ["cells"] * 4, "y_um": [0.0, 1, 2, 4],
    ...                   "x_um": [0.0, 0, 0, 0], "area_um2": [100.0, 100, 50, 50]})
    >>> lin = pd.DataFrame({"parent_id": [1, 1], "child_id": [2, 3], "frame": [2, 2]})
    >>> import tempfile, pathlib, xml.etree.ElementTree as ET
    >>> out = export_trackmate(t, lin, pathlib.Path(tempfile.mkdtemp()) / "t.xml",
    ...                        pixel_size_um=0.5, interval_s=60)
    >>> [tr.get("NUMBER_SPLITS") for tr in ET.parse(out).iter("Track")]
    ['1']
    """
    _check_calibration(pixel_size_um, interval_s, shape_tyx)
    px, dt = float(pixel_size_um), float(interval_s)
    rows = _select(tracks, population)
    _check_tracks(rows)
    n = len(rows)

    # --- spots, sorted by population, track, frame --------------------------------------
    if n:
        pop_names = rows[col.POPULATION].astype(str).to_numpy(dtype=object)
        tid = _numeric(rows, col.TRACK_ID).astype(np.int64)
        frame = _numeric(rows, col.FRAME).astype(np.int64)
        x, y, area = (_numeric(rows, c) for c in (col.X_UM, col.Y_UM, col.AREA_UM2))
    else:  # an empty table may even lack the columns
        pop_names = np.zeros(0, dtype=object)
        tid, frame = np.zeros(0, np.int64), np.zeros(0, np.int64)
        x, y, area = np.zeros(0), np.zeros(0), np.zeros(0)
    codes = _population_codes(pop_names)
    pop_code = np.array([codes[p] for p in pop_names], dtype=np.int64)
    order = np.lexsort((frame, tid, pop_code))
    pop_names, pop_code, tid, frame = pop_names[order], pop_code[order], tid[order], frame[order]
    x, y = x[order], y[order]
    t = frame * dt
    radius = _radius(area[order], px)

    # --- links ----------------------------------------------------------------------------
    same = (pop_code[1:] == pop_code[:-1]) & (tid[1:] == tid[:-1])
    src = np.flatnonzero(same)
    tgt = src + 1
    starts = np.flatnonzero(np.r_[True, ~same]) if n else np.zeros(0, np.int64)
    ends = np.r_[starts[1:] - 1, n - 1] if n else np.zeros(0, np.int64)
    dsrc, dtgt = _division_links(lineage, pop_code, tid, frame, starts, ends, codes)
    src = np.concatenate([src, dsrc]).astype(np.int64)
    tgt = np.concatenate([tgt, dtgt]).astype(np.int64)
    if len(src):
        pairs = np.unique(np.column_stack([src, tgt]), axis=0)
        src, tgt = pairs[:, 0], pairs[:, 1]

    # --- TrackMate tracks = connected components with at least one link -------------------
    comp = _components(n, src, tgt)
    n_comp = int(comp.max()) + 1 if n else 0
    edge_comp = comp[src]
    linked = np.zeros(n_comp, bool)
    linked[edge_comp] = True
    track_of_comp = np.full(n_comp, -1, np.int64)
    track_of_comp[linked] = np.arange(int(linked.sum()))
    n_tracks = int(linked.sum())
    spot_track = track_of_comp[comp] if n else np.zeros(0, np.int64)
    edge_track = track_of_comp[edge_comp]

    # --- XML ------------------------------------------------------------------------------
    spot_features = list(_SPOT_BASE)
    # each spot column as (kind, values in spot order): strings are made one frame at a
    # time while the file is written, so memory does not grow with the movie
    spot_columns: list[tuple[str, np.ndarray]] = [
        ("const", "1.0"),
        ("float", x),
        ("float", y),
        ("const", "0.0"),
        ("float", t),
        ("int", frame),
        ("float", radius),
        ("const", "1"),
    ]
    for column, decl in _SPOT_MORPHOLOGY.items():
        if column in rows.columns:
            spot_features.append(decl)
            spot_columns.append(("float", _numeric(rows, column)[order]))
    for column, decl in _intensity_features(rows.columns):
        spot_features.append(decl)
        spot_columns.append(("float", _numeric(rows, column)[order]))
    spot_features += _SPOT_DEATHTRACK
    spot_columns += [("int", tid), ("int", pop_code)]

    # the file's frame (declarations, settings) as ElementTree writes it, with a marker
    # where the spots, the tracks and the track list go
    root = ET.Element("TrackMate", version=TRACKMATE_FILE_VERSION)
    log = ET.SubElement(root, "Log")
    log.text = _log_text(pop_names, n, n_tracks, len(src))
    model = ET.SubElement(root, "Model", spatialunits=SPATIAL_UNITS, timeunits=TIME_UNITS)
    decl = ET.SubElement(model, "FeatureDeclarations")
    for tag, feats in (
        ("SpotFeatures", spot_features),
        ("EdgeFeatures", _EDGE_FEATURES),
        ("TrackFeatures", _TRACK_FEATURES),
    ):
        group = ET.SubElement(decl, tag)
        for key, name, short, dim, isint in feats:
            ET.SubElement(
                group,
                "Feature",
                feature=key,
                name=name,
                shortname=short,
                dimension=dim,
                isint="true" if isint else "false",
            )
    all_spots = ET.SubElement(model, "AllSpots", nspots=str(n))
    all_tracks = ET.SubElement(model, "AllTracks")
    filtered = ET.SubElement(model, "FilteredTracks")
    if n:
        ET.SubElement(all_spots, _MARK)
    if n_tracks:
        ET.SubElement(all_tracks, _MARK)
        ET.SubElement(filtered, _MARK)
    root.append(_settings(rows, n, frame, radius, px, dt, image_path, shape_tyx))
    ET.SubElement(root, "GUIState", state="ConfigureViews")
    ET.indent(root, space="  ")
    pieces = ET.tostring(root, encoding="unicode").split(f"<{_MARK} />")

    keys = ["ID", "name"] + [f[0] for f in spot_features]
    out = Path(path)
    from .io import atomic_write

    with atomic_write(out) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("<?xml version='1.0' encoding='UTF-8'?>\n")
        fh.write(pieces.pop(0))
        if n:
            _write_spots(fh, keys, spot_columns, pop_names, tid, frame)
            fh.write(pieces.pop(0))
        if n_tracks:
            _write_tracks(fh, src, tgt, edge_track, spot_track, n_tracks, x, y, t, frame, pop_code)
            fh.write(pieces.pop(0))
            fh.write("\n      ".join(f'<TrackID TRACK_ID="{k}" />' for k in range(n_tracks)))
            fh.write(pieces.pop(0))
        else:
            fh.write("".join(pieces))
        fh.write("\n")
    logger.debug("wrote %d spots, %d links, %d TrackMate tracks to %s", n, len(src), n_tracks, out)
    return out


#: stands in the file's frame for the spots, tracks and track list written one by one
_MARK = "DEATHTRACK_STREAMED"
_INDENT = "\n" + "  " * 3  # children of AllSpots / AllTracks / FilteredTracks


def _attr(value: str) -> str:
    """An attribute value escaped as ElementTree escapes it."""
    if any(ch in value for ch in '&<>"\n\r\t'):
        value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        value = value.replace('"', "&quot;").replace("\r", "&#13;")
        value = value.replace("\n", "&#10;").replace("\t", "&#09;")
    return value


def _strings(kind: str, values, rows: np.ndarray) -> list[str]:
    if kind == "const":
        return [values] * len(rows)
    return _floats(values[rows]) if kind == "float" else _ints(values[rows])


def _elements(tag: str, keys: list[str], columns: list[list[str]], indent: str) -> str:
    """``<tag k="v" ... />`` per row, one per line at ``indent``, as ElementTree writes
    them."""
    names = [f' {k}="' for k in keys]
    return indent.join(
        f"<{tag}" + "".join(f'{a}{v}"' for a, v in zip(names, vals)) + " />"
        for vals in zip(*columns)
    )


def _write_spots(fh, keys, spot_columns, pop_names, tid, frame) -> None:
    """``SpotsInFrame`` elements with their spots, one frame's strings at a time."""
    n = len(frame)
    by_frame = np.argsort(frame, kind="stable")
    frames, first = np.unique(frame[by_frame], return_index=True)
    bounds = np.r_[first, n]
    for k, f in enumerate(frames.tolist()):
        rows = by_frame[bounds[k] : bounds[k + 1]]
        names = [_attr(f"{p}_{i}") for p, i in zip(pop_names[rows].tolist(), tid[rows].tolist())]
        columns = [_ints(rows), names] + [_strings(kind, v, rows) for kind, v in spot_columns]
        if k:
            fh.write(_INDENT)
        fh.write(f'<SpotsInFrame frame="{f}">{_INDENT}  ')
        fh.write(_elements("Spot", keys, columns, _INDENT + "  "))
        fh.write(f"{_INDENT}</SpotsInFrame>")


# --- inputs ---------------------------------------------------------------------------------


def _check_calibration(pixel_size_um, interval_s, shape_tyx) -> None:
    for name, value in (("pixel_size_um", pixel_size_um), ("interval_s", interval_s)):
        if value is None or not math.isfinite(float(value)) or float(value) <= 0:
            raise ValueError(f"`{name}` must be a number > 0, got {value!r}")
    if shape_tyx is not None:
        if len(shape_tyx) != 3 or any(int(s) < 1 for s in shape_tyx):
            raise ValueError(
                f"`shape_tyx` must be (T, Y, X) with every size >= 1, got {tuple(shape_tyx)!r}"
            )


def _select(tracks: pd.DataFrame, population: str | None) -> pd.DataFrame:
    if population is None:
        return tracks
    if col.POPULATION not in tracks.columns:
        if len(tracks):
            raise ValueError(
                f"`tracks` has no {col.POPULATION!r} column to select population="
                f"{population!r} from; found {list(tracks.columns)}"
            )
        return tracks
    found = set(tracks[col.POPULATION].astype(str).unique())
    if population not in found and population not in col.POPULATIONS:
        raise ValueError(
            f"population={population!r} is not in `tracks`; it has {sorted(found)} "
            f"(deathtrack populations: {list(col.POPULATIONS)})"
        )
    return tracks[tracks[col.POPULATION].astype(str) == population]


def _check_tracks(rows: pd.DataFrame) -> None:
    if not len(rows):
        return
    missing = [c for c in _REQUIRED if c not in rows.columns]
    if missing:
        raise ValueError(f"`tracks` lacks column(s) {missing}; found {list(rows.columns)}")
    for c in (col.FRAME, col.TRACK_ID, col.POPULATION):
        bad = rows[c].isna()
        if bad.any():
            raise ValueError(
                f"`tracks` column {c!r} has {int(bad.sum())} missing value(s) "
                f"(first at row {rows.index[bad.to_numpy()][0]!r}); every spot needs one"
            )
    for c in (col.FRAME, col.TRACK_ID):
        values = pd.to_numeric(rows[c], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values) | (values != np.round(values)) | (values < 0)
        if bad.any():
            raise ValueError(
                f"`tracks` column {c!r} must hold integers >= 0; got "
                f"{rows[c].to_numpy()[bad][0]!r} at row {rows.index[bad][0]!r}"
            )
    for c in (col.X_UM, col.Y_UM):
        values = pd.to_numeric(rows[c], errors="coerce").to_numpy(dtype=np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            raise ValueError(
                f"`tracks` column {c!r} has {int(bad.sum())} missing or infinite value(s) "
                f"(first at row {rows.index[bad][0]!r}); TrackMate needs every position"
            )
    dup = rows.duplicated([col.POPULATION, col.TRACK_ID, col.FRAME])
    if dup.any():
        first = rows[dup].iloc[0]
        raise ValueError(
            f"`tracks` has {int(dup.sum())} duplicate (population, track_id, frame) row(s), "
            f"e.g. population={first[col.POPULATION]!r}, track_id={first[col.TRACK_ID]!r}, "
            f"frame={first[col.FRAME]!r}: a track has one object per frame"
        )


def _population_codes(names: np.ndarray) -> dict[str, int]:
    """Stable integer per population: position in POPULATION_CODES, then the others sorted."""
    codes = {p: i for i, p in enumerate(POPULATION_CODES)}
    for p in sorted(set(names.tolist()) - set(codes)):
        codes[p] = len(codes)
    return codes


def _numeric(rows: pd.DataFrame, column: str) -> np.ndarray:
    return pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=np.float64)


def _radius(area_um2: np.ndarray, pixel_size_um: float) -> np.ndarray:
    """Equivalent-disc radius; the median radius (or half a pixel) where area is unusable."""
    with np.errstate(invalid="ignore"):
        r = np.sqrt(area_um2 / np.pi)
    ok = np.isfinite(r) & (r > 0)
    if not ok.all():
        fill = float(np.median(r[ok])) if ok.any() else 0.5 * pixel_size_um
        r = np.where(ok, r, fill)
    return r


def _intensity_features(columns: Sequence[str]) -> list[tuple[str, tuple]]:
    """``<channel>_mean`` columns -> MEAN_INTENSITY_<CHANNEL> declarations."""
    out: list[tuple[str, tuple]] = []
    seen: set[str] = set()
    for c in columns:
        if not isinstance(c, str) or not c.endswith(_MEAN_SUFFIX) or c == _MEAN_SUFFIX:
            continue
        channel = c[: -len(_MEAN_SUFFIX)]
        key = "MEAN_INTENSITY_" + re.sub(r"[^0-9A-Za-z_]", "_", channel).upper()
        if key in seen:
            logger.warning(
                "column %r maps to TrackMate feature %s already written; skipped", c, key
            )
            continue
        seen.add(key)
        out.append((c, (key, f"Mean intensity {channel}", f"Mean {channel}", "INTENSITY", False)))
    return out


# --- graph ----------------------------------------------------------------------------------


def _division_links(lineage, pop_code, tid, frame, starts, ends, codes):
    """Division links, for the lineage rows whose population is exported.

    From the parent's last spot before the daughter's first frame (its last spot
    when, as in deathtrack, the parent track ends at the division) to the
    daughter's first spot.
    """
    empty = (np.zeros(0, np.int64), np.zeros(0, np.int64))
    if lineage is None or not len(lineage) or not len(starts):
        return empty
    missing = [c for c in (col.PARENT_ID, col.CHILD_ID) if c not in lineage.columns]
    if missing:
        raise ValueError(f"`lineage` lacks column(s) {missing}; found {list(lineage.columns)}")
    ids = lineage[[col.PARENT_ID, col.CHILD_ID]].apply(pd.to_numeric, errors="coerce")
    bad = ids.isna().any(axis=1).to_numpy()
    if bad.any():
        raise ValueError(
            f"`lineage` has {int(bad.sum())} row(s) without a numeric parent_id/child_id "
            f"(first at row {lineage.index[bad][0]!r}); every row links two tracks"
        )
    exported = set(pop_code[starts].tolist())
    keys = list(zip(pop_code[starts].tolist(), tid[starts].tolist()))
    span = dict(zip(keys, zip(starts.tolist(), ends.tolist())))
    if col.POPULATION in lineage.columns:
        lin_pop = [codes.get(str(p), -1) for p in lineage[col.POPULATION].tolist()]
    else:
        lin_pop = [codes[col.CELLS]] * len(lineage)
    src, tgt = [], []
    parents = ids[col.PARENT_ID].astype(np.int64).tolist()
    children = ids[col.CHILD_ID].astype(np.int64).tolist()
    for p, parent, child in zip(lin_pop, parents, children):
        if p not in exported:
            continue  # a population that is not exported
        a, b = span.get((p, parent)), span.get((p, child))
        if a is None or b is None or parent == child:
            logger.warning(
                "lineage row parent_id=%d child_id=%d: %s; no division link",
                parent,
                child,
                "a track cannot be its own parent"
                if parent == child
                else f"track {parent if a is None else child} is not in `tracks`",
            )
            continue
        born = int(frame[b[0]])
        # the parent's spots are a[0]..a[1], sorted by frame: last one before `born`
        k = a[0] + int(np.searchsorted(frame[a[0] : a[1] + 1], born)) - 1
        if k < a[0]:
            logger.warning(
                "lineage row parent_id=%d child_id=%d: the daughter starts at frame %d, "
                "not after the parent's first frame %d; no division link",
                parent,
                child,
                born,
                int(frame[a[0]]),
            )
            continue
        src.append(k)
        tgt.append(b[0])
    if not src:
        return empty
    return np.array(src, np.int64), np.array(tgt, np.int64)


def _components(n: int, src: np.ndarray, tgt: np.ndarray) -> np.ndarray:
    """Connected-component label per spot, numbered in order of each component's first spot."""
    if n == 0:
        return np.zeros(0, np.int64)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(src), np.int8), (src, tgt)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse]


def _write_tracks(fh, src, tgt, edge_track, spot_track, n_tracks, x, y, t, frame, pop_code) -> None:
    """One ``Track`` element per linked component with its ``Edge`` elements, written
    track by track."""
    n_spots = np.bincount(spot_track[spot_track >= 0], minlength=n_tracks)
    gaps = np.bincount(edge_track, weights=(frame[tgt] - frame[src]) > 1, minlength=n_tracks)
    out_deg = np.bincount(src, minlength=len(x))
    in_deg = np.bincount(tgt, minlength=len(x))
    tracked = spot_track >= 0
    splits = np.bincount(spot_track[tracked & (out_deg > 1)], minlength=n_tracks)
    merges = np.bincount(spot_track[tracked & (in_deg > 1)], minlength=n_tracks)
    start = np.full(n_tracks, np.inf)
    stop = np.full(n_tracks, -np.inf)
    np.minimum.at(start, spot_track[tracked], t[tracked])
    np.maximum.at(stop, spot_track[tracked], t[tracked])
    # links never cross populations, so all spots of a TrackMate track share one
    pop_of_track = np.zeros(n_tracks, np.int64)
    pop_of_track[spot_track[tracked]] = pop_code[tracked]
    track_values = [
        _ints(np.arange(n_tracks)),
        _ints(np.arange(n_tracks)),
        _ints(n_spots),
        _ints(gaps),
        _ints(splits),
        _ints(merges),
        _floats(stop - start),
        _floats(start),
        _floats(stop),
        _ints(pop_of_track),
    ]
    track_keys = ["name"] + [f[0] for f in _TRACK_FEATURES]
    edge_keys = [f[0] for f in _EDGE_FEATURES]
    order = np.lexsort((src, edge_track))
    first = np.searchsorted(edge_track[order], np.arange(n_tracks + 1))
    inner = _INDENT + "  "
    for k in range(n_tracks):
        e = order[first[k] : first[k + 1]]
        s, g = src[e], tgt[e]
        dt_edge = t[g] - t[s]
        disp = np.hypot(x[g] - x[s], y[g] - y[s])
        edge_values = [
            _ints(s),
            _ints(g),
            _floats(disp / dt_edge),
            _floats(disp),
            _floats(0.5 * (t[s] + t[g])),
            _floats(0.5 * (x[s] + x[g])),
            _floats(0.5 * (y[s] + y[g])),
            ["0.0"] * len(e),
        ]
        head = _elements("Track", track_keys, [[f"Track_{k}"], *([v[k]] for v in track_values)], "")
        if k:
            fh.write(_INDENT)
        if not len(e):  # pragma: no cover - every TrackMate track has a link
            fh.write(head)
            continue
        fh.write(head[: -len(" />")] + ">" + inner)
        fh.write(_elements("Edge", edge_keys, edge_values, inner))
        fh.write(f"{_INDENT}</Track>")


# --- formatting and writing -----------------------------------------------------------------


def _floats(values: np.ndarray) -> list[str]:
    """Shortest round-trip decimal strings that Java's Double.valueOf reads back exactly."""
    a = np.asarray(values, dtype=np.float64)
    s = list(map(repr, a.tolist()))  # '0.1', '1e-05', '1e+16': all valid Java literals
    bad = np.flatnonzero(~np.isfinite(a))
    for i in bad.tolist():
        s[i] = "NaN" if np.isnan(a[i]) else ("Infinity" if a[i] > 0 else "-Infinity")
    return s


def _ints(values: np.ndarray) -> list[str]:
    return np.asarray(values).astype(np.int64).astype(str).tolist()


def _log_text(pop_names: np.ndarray, n: int, n_tracks: int, n_links: int) -> str:
    try:
        from importlib.metadata import version

        dt_version = version("deathtrack")
    except Exception:  # pragma: no cover - not installed as a package
        dt_version = "unknown"
    counts = pd.Series(pop_names, dtype=object).value_counts(sort=False).to_dict() if n else {}
    per_pop = ", ".join(f"{p}: {c} spots" for p, c in counts.items()) or "no spots"
    return (
        f"Exported by deathtrack {dt_version} (deathtrack.export.export_trackmate).\n"
        f"{n} spots ({per_pop}), {n_links} links, {n_tracks} tracks.\n"
        "Spot names are <population>_<track_id>; spot features DT_TRACK_ID and "
        "DT_POPULATION (0 cells, 1 immune) hold the same.\n"
    )


def _settings(rows, n, frame, radius, px, dt, image_path, shape_tyx) -> ET.Element:
    if shape_tyx is not None:
        nframes, height, width = (int(s) for s in shape_tyx)
    else:
        nframes = int(frame.max()) + 1 if n else 1
        xs = _numeric(rows, col.X) if col.X in rows.columns else _numeric(rows, col.X_UM) / px
        ys = _numeric(rows, col.Y) if col.Y in rows.columns else _numeric(rows, col.Y_UM) / px
        width = int(np.ceil(np.nanmax(xs))) + 1 if n and np.isfinite(xs).any() else 1
        height = int(np.ceil(np.nanmax(ys))) + 1 if n and np.isfinite(ys).any() else 1
    if image_path is not None:
        image = Path(image_path).resolve()
        filename, folder = image.name, str(image.parent) + os.sep
    else:
        filename, folder = "", ""
    settings = ET.Element("Settings")
    ET.SubElement(
        settings,
        "ImageData",
        filename=filename,
        folder=folder,
        width=str(width),
        height=str(height),
        nslices="1",
        nframes=str(nframes),
        pixelwidth=repr(px),
        pixelheight=repr(px),
        voxeldepth="1.0",
        timeinterval=repr(dt),
    )
    ET.SubElement(
        settings,
        "BasicSettings",
        xstart="0",
        xend=str(width - 1),
        ystart="0",
        yend=str(height - 1),
        zstart="0",
        zend="0",
        tstart="0",
        tend=str(nframes - 1),
    )
    r = float(np.median(radius)) if n else 0.5 * px
    ET.SubElement(settings, "DetectorSettings", DETECTOR_NAME="MANUAL_DETECTOR", RADIUS=repr(r))
    ET.SubElement(settings, "InitialSpotFilter", feature="QUALITY", value="0.0", isabove="true")
    ET.SubElement(settings, "SpotFilterCollection")
    ET.SubElement(settings, "TrackerSettings", TRACKER_NAME="MANUAL_TRACKER")
    ET.SubElement(settings, "TrackFilterCollection")
    analyzers = ET.SubElement(settings, "AnalyzerCollection")
    for tag in ("SpotAnalyzers", "EdgeAnalyzers", "TrackAnalyzers"):
        ET.SubElement(analyzers, tag)
    return settings
