"""Layer data (napari's ``(data, kwargs, layer_type)`` tuples) from stacks and results folders.

Plain numpy and pandas: nothing here imports napari or Qt. The reader,
the sample data, the analysis widget and the review widget all build their
layers here, so a layer looks the same however it was opened.

Coordinates: every layer is (T, [Z], Y, X) with scale ``(1, [z_step_um],
pixel_size_um, pixel_size_um)``. The time axis is in **frames** (scale 1), so
the time slider position is the ``frame`` column of ``tracks.csv`` and
``events.csv``; y and x are in µm. The frame interval is kept in each layer's
``metadata["deathtrack"]["interval_s"]``.

Layer names carry the stack's name (``cells (demo)``, ``deaths (demo)``), so
two stacks or two results folders in one viewer stay apart.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from deathtrack import columns as col
from deathtrack.pipeline import read_table, table_path  # noqa: F401 - used by the widgets too

from . import _lazy

logger = logging.getLogger(__name__)

LayerData = tuple[Any, dict, str]

#: colormap of each channel role; channels without a role cycle through OTHER_COLORMAPS
ROLE_COLORMAPS = {
    col.ROLE_CELLS: "gray",
    col.ROLE_IMMUNE: "green",
    col.ROLE_DYE: "magenta",
    col.ROLE_CASPASE: "yellow",
    col.ROLE_NUCLEI: "blue",
}
OTHER_COLORMAPS = ("cyan", "red", "bop orange", "bop purple")

#: the reviewed label meaning "this is not a death" (left out of training, see classify)
NOT_DEATH = col.NOT_DEATH
#: colour of each call (Okabe-Ito, readable by colour-blind people); "" = no call yet
MODE_COLORS = {
    col.APOPTOTIC: "#56b4e9",
    col.NECROPTOTIC: "#ff6a1f",
    col.UNCERTAIN: "#f0e442",
    NOT_DEATH: "#9a9a9a",
    "": "#ffffff",
}
REVIEWED_MODE = col.REVIEWED_MODE
#: diameter of an event marker, µm (about a cell)
EVENT_MARKER_UM = 26.0
#: frames after the death frame that a marker stays on screen, fading out
FADE_FRAMES = 5
#: opacity of a marker at the onset of the death (it grows to 1 at the death frame)
ONSET_ALPHA = 0.45
#: opacity of the last faded marker after death
FADED_ALPHA = 0.2
#: fill of a marker once the cell has taken up the dead-cell dye (dye_frame on): a faint
#: veil, so that the cell stays visible through it
DYE_FILL = (1.0, 0.25, 1.0, 0.10)

RESULT_TABLES = ("tracks", "events", "recruitment", "lineage")


def space(pixel_size_um: float | None, *, z_step_um: float | None = None, ndim: int = 3) -> dict:
    """Layer kwargs placing data in µm: ``scale``, ``units`` and ``axis_labels``.

    The time axis stays in frames (scale 1; napari's unitless "pixel"), so the slider
    position is the ``frame`` of the tables. Without a pixel size, y and x stay in pixels.
    """
    px = float(pixel_size_um) if pixel_size_um else None
    length = "micrometer" if px else "pixel"
    if ndim == 4:
        dz = float(z_step_um or px or 1.0)
        return {
            "scale": (1.0, dz, px or 1.0, px or 1.0),
            "units": ("pixel", length, length, length),
            "axis_labels": ("t", "z", "y", "x"),
        }
    return {
        "scale": (1.0, px or 1.0, px or 1.0),
        "units": ("pixel", length, length),
        "axis_labels": ("t", "y", "x"),
    }


def layer_name(what: str, label: str | None) -> str:
    """Name of a layer: what it shows, then the stack or results folder it comes from."""
    return f"{what} ({label})" if label else what


def stack_label(path: str | Path) -> str:
    """The short name of a stack in layer names: its stem (file name without extension)."""
    from deathtrack.io import stack_stem

    return stack_stem(Path(path))


# ---------------------------------------------------------------------------
# results folders


def read_run_info(folder: str | Path) -> dict | None:
    """``run.json`` of a deathtrack results folder, or None if it is not one."""
    path = Path(folder) / "run.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def is_results_folder(folder: str | Path) -> bool:
    """A folder written by ``deathtrack run`` (it has a readable ``run.json``)."""
    folder = Path(folder)
    return folder.is_dir() and read_run_info(folder) is not None


def run_calibration(run: Mapping) -> dict[str, float | None]:
    """Pixel size, interval and z step the run used (from ``run.json``)."""
    cal = (run.get("input") or {}).get("calibration") or {}
    return {k: cal.get(k) for k in ("pixel_size_um", "interval_s", "z_step_um")}


def find_stack(folder: str | Path, run: Mapping) -> Path | None:
    """The stack a results folder was made from.

    ``run.json["stack"]`` when it exists; otherwise a file of the same name beside the
    results folder or one level up (the folder was copied to another computer).
    """
    stack = run.get("stack")
    if not stack:
        return None
    stack = Path(stack)
    if stack.exists():
        return stack
    folder = Path(folder).resolve()
    for base in (folder, folder.parent, folder.parent.parent):
        candidate = base / stack.name
        if candidate.exists():
            return candidate
    return None


# ---------------------------------------------------------------------------
# stacks


def resolve_roles(movie, roles_known: bool, channels: Mapping[str, int | str] | None):
    """Role -> channel index: given channels first, then what the file says."""
    roles = dict(movie.roles) if roles_known else {}
    if not roles_known:  # the registry opened it with cells=0 only to read it
        roles.update({r: i for r, i in movie.roles.items() if r != col.ROLE_CELLS})
    for role, value in (channels or {}).items():
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, (int, np.integer)):
            if 0 <= int(value) < movie.n_channels:
                roles[role] = int(value)
            continue
        hits = [i for i, n in enumerate(movie.channel_names) if n.lower() == str(value).lower()]
        if len(hits) == 1:
            roles[role] = hits[0]
    return roles


def channel_layer_names(channel_names: list[str], roles: Mapping[str, int]) -> list[str]:
    """Name of each channel's layer: its role, else its channel name."""
    by_index: dict[int, str] = {}
    for role in col.ROLES:
        if role in roles and roles[role] not in by_index:
            by_index[roles[role]] = role
    names = []
    for c, name in enumerate(channel_names):
        names.append(by_index.get(c) or name or f"channel {c}")
    return names


def stack_layer_data(
    path: str | Path,
    *,
    channels: Mapping[str, int | str] | None = None,
    pixel_size_um: float | None = None,
    interval_s: float | None = None,
    z_step_um: float | None = None,
    axes: str | None = None,
    label: str | None = None,
) -> list[LayerData]:
    """One lazy image layer per channel of a stack, named by role, scaled in µm.

    Parameters
    ----------
    path
        A stack :func:`deathtrack.io.open_stack` reads.
    channels
        Role -> channel index or name (as in ``[input.channels]``); roles not given
        come from the file's channel names.
    pixel_size_um, interval_s, z_step_um
        Calibration that wins over the file's metadata (e.g. the values of a run).
    axes
        Axes of the stored array when the file does not say.
    label
        Name of the stack in the layer names (default: the stack's stem), e.g.
        ``cells (demo)``.

    Raises
    ------
    deathtrack.errors.DeathtrackError
        When the file cannot be read as a stack.
    """
    handle = _lazy.open_movie(path, axes=axes)
    movie = handle.movie
    roles = resolve_roles(movie, handle.roles_known, channels)
    cal = movie.calibration
    px = pixel_size_um or cal.pixel_size_um
    dt = interval_s or cal.interval_s
    dz = z_step_um or cal.z_step_um
    frame_shape = tuple(movie.shape[2:])
    names = channel_layer_names(movie.channel_names, roles)
    label = label or stack_label(movie.path)
    role_of = {i: r for r, i in roles.items()}
    others = iter(OTHER_COLORMAPS * (1 + movie.n_channels // len(OTHER_COLORMAPS)))
    layers: list[LayerData] = []
    for c in range(movie.n_channels):
        role = role_of.get(c)
        data = _lazy.channel_array(
            movie.path,
            c,
            n_frames=movie.n_frames,
            frame_shape=frame_shape,
            dtype=movie.dtype,
            axes=axes,
        )
        kwargs = {
            "name": layer_name(names[c], label),
            "colormap": ROLE_COLORMAPS.get(role) if role else next(others),
            "blending": "additive",
            "contrast_limits": _lazy.contrast_limits(
                lambda t, c=c: _lazy.read_frame(movie.path, c, t, axes=axes), movie.n_frames
            ),
            **space(px, z_step_um=dz, ndim=4 if movie.is_3d else 3),
            "metadata": {
                "deathtrack": {
                    "kind": "image",
                    "stack": str(Path(movie.path).resolve()),
                    "channel": c,
                    "channel_name": movie.channel_names[c],
                    "label": label,
                    "role": role,
                    "roles": dict(roles),
                    "roles_known": handle.roles_known or bool(channels),
                    "axes": axes,
                    "pixel_size_um": px,
                    "interval_s": dt,
                    "z_step_um": dz,
                    "calibration_source": dict(cal.source),
                }
            },
        }
        layers.append((data, kwargs, "image"))
    return layers


# ---------------------------------------------------------------------------
# events


def _clean(v) -> str:
    return "" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v)


def effective_calls(events: pd.DataFrame) -> list[str]:
    """The call shown for each event: the reviewed mode when there is one, else the mode."""
    auto = [_clean(v) for v in events.get(col.MODE, pd.Series([""] * len(events)))]
    if REVIEWED_MODE not in events.columns:
        return auto
    reviewed = [_clean(v) for v in events[REVIEWED_MODE]]
    return [r or a for r, a in zip(reviewed, auto)]


def call_confidence(mode: str, p_necroptotic) -> float | None:
    """Confidence of the automatic call itself: p for necroptotic, 1 - p for apoptotic.

    For ``uncertain`` it is the larger of the two (how far from a coin toss the call
    was); None without a probability.
    """
    try:
        p = float(p_necroptotic)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(p):
        return None
    if mode == col.NECROPTOTIC:
        return p
    if mode == col.APOPTOTIC:
        return 1.0 - p
    return max(p, 1.0 - p)


#: every character the deaths layer's text can use (see _workarounds.warm_text_glyphs)
TEXT_CHARS = "#0123456789 .·+-()_" + "".join(
    sorted(set("apoptotic necroptotic uncertain not death reviewed no call p_nec dye"))
)


def call_text(mode: str, p_necroptotic, reviewed: str = "") -> str:
    """How a call reads in the table and on the canvas.

    ``necroptotic 0.93`` (the automatic call and its own confidence), ``uncertain
    (p_nec 0.55)``, or ``apoptotic (reviewed)`` when a reviewer has decided.
    """
    if reviewed:
        return f"{reviewed.replace('_', ' ')} (reviewed)"
    if not mode:
        return "no call"
    conf = call_confidence(mode, p_necroptotic)
    if conf is None:
        return mode
    if mode == col.UNCERTAIN:
        return f"uncertain (p_nec {float(p_necroptotic):.2f})"
    return f"{mode} {conf:.2f}"


def mode_colors(calls: list[str]) -> np.ndarray:
    """RGBA colour (N, 4) of each call (see :data:`MODE_COLORS`)."""
    from matplotlib.colors import to_rgba

    table = {k: to_rgba(v) for k, v in MODE_COLORS.items()}
    out = np.zeros((len(calls), 4), np.float32)
    for i, call in enumerate(calls):
        out[i] = table.get(call, table[""])
    return out


def effective_blank(values) -> np.ndarray:
    """Strings with missing values as ''."""
    return np.array([_clean(v) for v in values], dtype=object)


def _int_or_none(v) -> int | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return int(round(f)) if np.isfinite(f) else None


def track_positions(tracks: pd.DataFrame | None, track_ids) -> dict[tuple[int, int], tuple]:
    """``(track_id, frame) -> (y, x)`` of the target cells of the given tracks."""
    if tracks is None or not len(tracks) or col.TRACK_ID not in tracks.columns:
        return {}
    ids = {int(t) for t in track_ids if _int_or_none(t) is not None}
    df = tracks
    if col.POPULATION in df.columns:
        df = df[df[col.POPULATION] == col.CELLS]
    df = df[df[col.TRACK_ID].isin(ids)].dropna(subset=[col.FRAME, col.Y, col.X])
    keys = zip(df[col.TRACK_ID].astype(int), df[col.FRAME].astype(int))
    return dict(zip(keys, zip(df[col.Y].to_numpy(float), df[col.X].to_numpy(float))))


def event_markers(
    events: pd.DataFrame,
    *,
    positions: Mapping[tuple[int, int], tuple] | None = None,
    n_frames: int | None = None,
) -> pd.DataFrame:
    """One marker per event per frame, from its onset to :data:`FADE_FRAMES` after death.

    Columns ``event_id, frame, offset, y, x`` (``offset`` = frame - death frame), and
    ``z`` when the events have one. A marker follows the dying cell's track when
    ``positions`` (see :func:`track_positions`) has it at that frame, else it sits at the
    place of death.
    """
    positions = positions or {}
    rows: list[tuple] = []
    has_z = col.Z in events.columns
    for ev in events.itertuples(index=False):
        ev = ev._asdict()
        frame = _int_or_none(ev.get(col.FRAME))
        if frame is None:
            continue
        onset = _int_or_none(ev.get(col.ONSET_FRAME))
        onset = frame if onset is None or onset > frame else max(onset, 0)
        last = frame + FADE_FRAMES
        if n_frames:
            last = min(last, n_frames - 1)
        track = _int_or_none(ev.get(col.TRACK_ID))
        for f in range(onset, max(last, frame) + 1):
            y, x = float(ev[col.Y]), float(ev[col.X])
            if track is not None and (track, f) in positions and f <= frame:
                y, x = positions[(track, f)]  # after death the track may be gone: stay put
            z = float(ev.get(col.Z) or 0.0) if has_z else 0.0
            rows.append((int(ev[col.EVENT_ID]), f, f - frame, y, x, z))
    out = pd.DataFrame(rows, columns=[col.EVENT_ID, col.FRAME, "offset", col.Y, col.X, col.Z])
    return out if has_z else out.drop(columns=col.Z)


def _marker_alpha(offset: np.ndarray, onset_offset: np.ndarray) -> np.ndarray:
    """Opacity: ONSET_ALPHA at onset rising to 1 at death, then fading to FADED_ALPHA."""
    alpha = np.ones(len(offset), np.float32)
    before = offset < 0
    span = np.maximum(-onset_offset[before], 1)
    alpha[before] = ONSET_ALPHA + (1 - ONSET_ALPHA) * (1 - (-offset[before]) / span)
    after = offset > 0
    alpha[after] = 1 - (1 - FADED_ALPHA) * offset[after] / FADE_FRAMES
    return alpha


def marker_label(event_id, text: str, dye: bool) -> str:
    """The canvas text of one marker: ``#id`` and the call (:func:`call_text`), ``· dye+``."""
    return f"#{int(event_id)} {text}{' · dye+' if dye else ''}"


def marker_style(events: pd.DataFrame, markers: pd.DataFrame) -> dict:
    """Features, colours and widths of the markers of :func:`event_markers`.

    Ring colour = the call (reviewed label wins), opacity = where the frame is between
    onset and a few frames after death (see :func:`_marker_alpha`), magenta fill once
    the cell is dye-positive (``dye_frame``), thicker ring on the death frame. The text
    says ``#id call confidence`` and ``dye+``.
    """
    n = len(markers)
    ids = events[col.EVENT_ID].to_numpy()
    index = pd.Index(ids)
    row = index.get_indexer(markers[col.EVENT_ID].to_numpy()) if n else np.zeros(0, int)
    calls = np.array(effective_calls(events), dtype=object)
    modes = effective_blank(events[col.MODE]) if col.MODE in events.columns else None
    if modes is None:
        modes = np.array([""] * len(events), dtype=object)
    p = (
        pd.to_numeric(events[col.P_NECROPTOTIC], errors="coerce").to_numpy(float)
        if col.P_NECROPTOTIC in events.columns
        else np.full(len(events), np.nan)
    )
    reviewed = (
        effective_blank(events[REVIEWED_MODE])
        if REVIEWED_MODE in events.columns
        else np.array([""] * len(events), dtype=object)
    )
    texts = np.array([call_text(m, q, r) for m, q, r in zip(modes, p, reviewed)], dtype=object)
    frames = pd.to_numeric(events[col.FRAME], errors="coerce").to_numpy(float)
    onsets = (
        pd.to_numeric(events[col.ONSET_FRAME], errors="coerce").to_numpy(float)
        if col.ONSET_FRAME in events.columns
        else frames.copy()
    )
    onsets = np.where(np.isfinite(onsets) & (onsets <= frames), onsets, frames)
    dye = (
        pd.to_numeric(events[col.DYE_FRAME], errors="coerce").to_numpy(float)
        if col.DYE_FRAME in events.columns
        else np.full(len(events), np.nan)
    )
    offset = markers["offset"].to_numpy(int) if n else np.zeros(0, int)
    frame = markers[col.FRAME].to_numpy(int) if n else np.zeros(0, int)
    onset_offset = (onsets - frames)[row] if n else np.zeros(0)
    dye_on = np.isfinite(dye[row]) & (frame >= dye[row]) if n else np.zeros(0, bool)
    border = mode_colors(list(calls[row])) if n else np.zeros((0, 4), np.float32)
    border[:, 3] = _marker_alpha(offset, onset_offset)
    face = np.zeros((n, 4), np.float32)
    face[dye_on] = DYE_FILL
    label = [marker_label(i, t, d) for i, t, d in zip(markers[col.EVENT_ID], texts[row], dye_on)]
    features = pd.DataFrame(
        {
            col.EVENT_ID: markers[col.EVENT_ID].to_numpy() if n else np.zeros(0, int),
            "offset": offset,
            col.MODE: modes[row],
            col.P_NECROPTOTIC: p[row],
            REVIEWED_MODE: reviewed[row],
            "call": calls[row],
            "dye": dye_on,
            "label": np.array(label, dtype=object),
        }
    )
    width = np.where(offset == 0, 0.09, 0.05).astype(np.float32)
    return {"features": features, "border_color": border, "face_color": face,
            "border_width": width}  # fmt: skip


def events_features(events: pd.DataFrame) -> pd.DataFrame:
    """One row per event: id, automatic call, p, reviewed label, shown call and its text."""
    modes = effective_blank(events[col.MODE]) if col.MODE in events.columns else None
    n = len(events)
    modes = modes if modes is not None else np.array([""] * n, dtype=object)
    p = (
        pd.to_numeric(events[col.P_NECROPTOTIC], errors="coerce").to_numpy(float)
        if col.P_NECROPTOTIC in events.columns
        else np.full(n, np.nan)
    )
    reviewed = (
        effective_blank(events[REVIEWED_MODE])
        if REVIEWED_MODE in events.columns
        else np.array([""] * n, dtype=object)
    )
    return pd.DataFrame(
        {
            col.EVENT_ID: events[col.EVENT_ID].to_numpy() if n else np.zeros(0, int),
            col.MODE: modes,
            col.P_NECROPTOTIC: p,
            REVIEWED_MODE: reviewed,
            "call": effective_calls(events),
            "text": [call_text(m, q, r) for m, q, r in zip(modes, p, reviewed)],
        }
    )


def markers_data(markers: pd.DataFrame, ndim: int = 3) -> np.ndarray:
    """Point coordinates (frame, [z], y, x) of the markers."""
    if not len(markers):
        return np.zeros((0, ndim))
    cols = [markers[col.FRAME]]
    if ndim == 4:
        cols.append(markers[col.Z] if col.Z in markers.columns else np.zeros(len(markers)))
    cols += [markers[col.Y], markers[col.X]]
    return np.column_stack([np.asarray(c, dtype=float) for c in cols])


def events_points(
    events: pd.DataFrame,
    *,
    pixel_size_um: float | None,
    ndim: int = 3,
    markers: pd.DataFrame | None = None,
    positions: Mapping[tuple[int, int], tuple] | None = None,
    n_frames: int | None = None,
) -> tuple[np.ndarray, dict]:
    """Point coordinates (frame, [z], y, x) and the styling kwargs of the deaths layer.

    One marker per event and frame from onset to a few frames after death (see
    :func:`event_markers`; pass ``markers`` to reuse them).
    """
    if markers is None:
        markers = event_markers(events, positions=positions, n_frames=n_frames)
    data = markers_data(markers, ndim)
    style = marker_style(events, markers)
    size = EVENT_MARKER_UM / float(pixel_size_um or 1.0)
    kwargs = {
        **style,
        "border_width_is_relative": True,
        "symbol": "disc",
        "size": size,
        "text": {
            # the feature itself, not a format string ("{label}"): napari then takes the
            # column as it is instead of formatting every marker's text row by row, so
            # a label's restyle (see the review panel) costs nothing for the others
            "string": {"feature": "label"},
            "color": "white",
            "size": 9,
            "anchor": "upper_left",
            # the text sits at the upper left of the ring, not on the cell
            "translation": [0.0] * (ndim - 2) + [-0.6 * size, -0.5 * size],
        },
    }
    return data, kwargs


def events_layer(
    events: pd.DataFrame,
    folder: str | Path,
    *,
    pixel_size_um: float | None,
    interval_s,
    ndim=3,
    label: str | None = None,
    tracks: pd.DataFrame | None = None,
    n_frames: int | None = None,
    z_step_um: float | None = None,
) -> LayerData:
    """The ``deaths`` points layer of a results folder (read-only: see the review panel);
    ``ndim = 4`` (frame, z, y, x) for the events of a 3D run, placed with ``z_step_um``."""
    positions = (
        track_positions(tracks, events[col.TRACK_ID]) if col.TRACK_ID in events.columns else {}
    )
    data, kwargs = events_points(
        events, pixel_size_um=pixel_size_um, ndim=ndim, positions=positions, n_frames=n_frames
    )
    kwargs.update(
        name=layer_name("deaths", label),
        **space(pixel_size_um, z_step_um=z_step_um, ndim=ndim),
        blending="translucent_no_depth",
        metadata={
            "deathtrack": {
                "kind": "events",
                "results": str(Path(folder).resolve()),
                "label": label,
                "pixel_size_um": pixel_size_um,
                "interval_s": interval_s,
                "n_frames": n_frames,
            }
        },
    )
    return data, kwargs, "points"


# ---------------------------------------------------------------------------
# tracks and labels


TRACK_FEATURES = (col.AREA_UM2, "circularity", "solidity", col.T_S)


def tracks_layers(
    tracks: pd.DataFrame,
    lineage: pd.DataFrame | None,
    folder: str | Path,
    *,
    pixel_size_um: float | None,
    interval_s: float | None,
    label: str | None = None,
    z_step_um: float | None = None,
) -> list[LayerData]:
    """One napari Tracks layer per population: data (track_id, t, y, x), features, lineage;
    (track_id, t, z, y, x) for the tracks of a 3D run (``z`` in the table).

    The target cells' tracks are shown, the immune cells' hidden (they swarm at deaths
    and hide the dying cell; switch them on in the layer list).
    """
    layers = []
    populations = (
        tracks[col.POPULATION].unique().tolist()
        if col.POPULATION in tracks.columns
        else [col.CELLS]
    )
    for pop in col.POPULATIONS:
        if pop not in populations:
            continue
        df = tracks[tracks[col.POPULATION] == pop] if col.POPULATION in tracks.columns else tracks
        df = df.dropna(subset=[col.TRACK_ID, col.FRAME, col.Y, col.X])
        if df.empty:
            continue
        df = df.sort_values([col.TRACK_ID, col.FRAME], kind="stable")
        zyx = (
            [col.Z, col.Y, col.X]
            if col.Z in df.columns and df[col.Z].notna().all()
            else [
                col.Y,
                col.X,
            ]
        )
        data = df[[col.TRACK_ID, col.FRAME, *zyx]].to_numpy(float)
        features = df[[c for c in TRACK_FEATURES if c in df.columns]].reset_index(drop=True)
        graph: dict[int, list[int]] = {}
        if pop == col.CELLS and lineage is not None and len(lineage):
            ids = set(df[col.TRACK_ID].astype(int))
            for parent, child in zip(lineage[col.PARENT_ID], lineage[col.CHILD_ID]):
                if int(parent) in ids and int(child) in ids:
                    graph.setdefault(int(child), []).append(int(parent))
        kwargs = {
            "name": layer_name(f"{pop} tracks", label),
            "features": features,
            "graph": graph,
            "tail_length": 8,
            "tail_width": 2,
            "colormap": "turbo" if pop == col.CELLS else "twilight",
            **space(pixel_size_um, z_step_um=z_step_um, ndim=len(zyx) + 1),
            "visible": pop == col.CELLS,
            "metadata": {
                "deathtrack": {
                    "kind": "tracks",
                    "population": pop,
                    "results": str(Path(folder).resolve()),
                    "label": label,
                    "interval_s": interval_s,
                }
            },
        }
        layers.append((data, kwargs, "tracks"))
    return layers


#: outline width of the segmentation in the labels layers, screen pixels
LABEL_CONTOUR = 1


def labels_layers(
    folder: str | Path,
    *,
    pixel_size_um: float | None,
    label: str | None = None,
    max_labels: Mapping[str, int] | None = None,
    z_step_um: float | None = None,
) -> list[LayerData]:
    """``labels_cells.tif`` and ``labels_immune.tif`` as lazy Labels layers (label = track_id);
    (T, Z, Y, X) for a 3D run, placed with ``z_step_um``.

    Drawn as outlines (the morphology stays visible under them) and hidden at first:
    switch them on in the layer list to check the segmentation.
    """
    layers = []
    for pop, opacity in ((col.CELLS, 0.8), (col.IMMUNE, 0.8)):
        path = Path(folder) / f"labels_{pop}.tif"
        if not path.is_file():
            continue
        try:
            data = _lazy.label_array(path, max_label=(max_labels or {}).get(pop))
        except Exception as err:  # a damaged label file must not hide the other results
            logger.warning("%s: cannot read the labels (%s)", path, err)
            continue
        if data is None:
            continue
        layers.append(
            (
                data,
                {
                    "name": layer_name(f"{pop} labels", label),
                    "opacity": opacity,
                    "visible": False,
                    **space(pixel_size_um, z_step_um=z_step_um, ndim=data.ndim),
                    "metadata": {
                        "deathtrack": {
                            "kind": "labels",
                            "population": pop,
                            "results": str(Path(folder).resolve()),
                            "label": label,
                            # napari's Labels takes no contour argument: the plugin's panels
                            # set it (see apply_display)
                            "contour": LABEL_CONTOUR,
                        }
                    },
                },
                "labels",
            )
        )
    return layers


def max_track_ids(tracks: pd.DataFrame | None) -> dict[str, int]:
    """The largest track_id of each population (the largest label of its label image)."""
    if tracks is None or not len(tracks) or col.TRACK_ID not in tracks.columns:
        return {}
    if col.POPULATION not in tracks.columns:
        return {col.CELLS: int(tracks[col.TRACK_ID].max())}
    ids = tracks.groupby(col.POPULATION)[col.TRACK_ID].max()
    return {str(pop): int(v) for pop, v in ids.items() if pd.notna(v)}


def apply_display(layer) -> None:
    """What layer data cannot say: labels layers drawn as outlines (``contour``)."""
    meta = (getattr(layer, "metadata", None) or {}).get("deathtrack") or {}
    if meta.get("kind") == "labels" and meta.get("contour") and not layer.contour:
        layer.contour = int(meta["contour"])


def results_label(folder: str | Path, taken: Iterable[str] = ()) -> str:
    """Name of a results folder in layer names: its own name (the stack's stem), with the
    folder above it when another results folder of that name is already shown."""
    folder = Path(folder).resolve()
    label = folder.name
    if label in set(taken):
        label = f"{folder.parent.name}/{folder.name}"
    return label


def results_layer_data(
    folder: str | Path, *, include_image: bool = True, label: str | None = None
) -> list[LayerData]:
    """Every layer of a results folder: the stack (when found), labels, tracks, deaths.

    ``label`` names the folder in the layer names (default: the folder's name).
    Returns an empty list when ``folder`` is not a results folder.
    """
    folder = Path(folder)
    run = read_run_info(folder)
    if run is None:
        return []
    label = label or results_label(folder)
    cal = run_calibration(run)
    px, dt = cal["pixel_size_um"], cal["interval_s"]
    layers: list[LayerData] = []
    if include_image:
        stack = find_stack(folder, run)
        if stack is not None:
            cfg_input = (run.get("config") or {}).get("input") or {}
            try:
                layers += stack_layer_data(
                    stack,
                    channels=cfg_input.get("channels") or None,
                    pixel_size_um=px,
                    interval_s=dt,
                    z_step_um=cal["z_step_um"],
                    axes=cfg_input.get("axes"),
                    label=label,
                )
            except Exception as err:  # the results stay readable without their image
                logger.warning("%s: cannot open the stack %s (%s)", folder, stack, err)
        else:
            logger.info(
                "%s: stack %s not found; showing the results only", folder, run.get("stack")
            )
    tracks = read_table(folder, "tracks")
    dz = cal["z_step_um"]
    layers += labels_layers(
        folder, pixel_size_um=px, label=label, max_labels=max_track_ids(tracks), z_step_um=dz
    )
    if tracks is not None and len(tracks):
        layers += tracks_layers(
            tracks,
            read_table(folder, "lineage"),
            folder,
            pixel_size_um=px,
            interval_s=dt,
            label=label,
            z_step_um=dz,
        )
    events = read_table(folder, "events")
    if events is not None:
        n_frames = (run.get("counts") or {}).get("n_frames")
        layers.append(
            events_layer(
                events,
                folder,
                pixel_size_um=px,
                interval_s=dt,
                label=label,
                tracks=tracks,
                n_frames=int(n_frames) if n_frames else None,
                # the deaths of a 3D run at their depth
                ndim=4 if col.Z in events.columns else 3,
                z_step_um=dz,
            )
        )
    return layers
