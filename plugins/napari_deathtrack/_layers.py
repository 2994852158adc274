"""Layer data (napari's ``(data, kwargs, layer_type)`` tuples) from stacks and results folders.

Plain numpy, dask and pandas: nothing here imports napari or Qt. The reader,
the sample data, the analysis widget and the review widget all build their
layers here, so a layer looks the same however it was opened.

Coordinates: every layer is (T, [Z], Y, X) with scale ``(1, [z_step_um],
pixel_size_um, pixel_size_um)``. The time axis is in **frames** (scale 1), so
the time slider position is the ``frame`` column of ``tracks.csv`` and
``events.csv``; y and x are in µm. The frame interval is kept in each layer's
``metadata["deathtrack"]["interval_s"]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
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
            "name": names[c],
            "colormap": ROLE_COLORMAPS.get(role) if role else next(others),
            "blending": "additive",
            "contrast_limits": _lazy.contrast_limits(
                lambda t, c=c: movie.read(c, t), movie.n_frames
            ),
            **space(px, z_step_um=dz, ndim=4 if movie.is_3d else 3),
            "metadata": {
                "deathtrack": {
                    "kind": "image",
                    "stack": str(Path(movie.path).resolve()),
                    "channel": c,
                    "channel_name": movie.channel_names[c],
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


def effective_calls(events: pd.DataFrame) -> list[str]:
    """The call shown for each event: the reviewed mode when there is one, else the mode."""

    def clean(v) -> str:
        return "" if v is None or pd.isna(v) else str(v)

    auto = [clean(v) for v in events.get(col.MODE, pd.Series([""] * len(events)))]
    if REVIEWED_MODE not in events.columns:
        return auto
    reviewed = [clean(v) for v in events[REVIEWED_MODE]]
    return [r or a for r, a in zip(reviewed, auto)]


def mode_colors(calls: list[str]) -> np.ndarray:
    """RGBA colour (N, 4) of each call (see :data:`MODE_COLORS`)."""
    from matplotlib.colors import to_rgba

    out = np.zeros((len(calls), 4), np.float32)
    for i, call in enumerate(calls):
        out[i] = to_rgba(MODE_COLORS.get(call, MODE_COLORS[""]))
    return out


def effective_blank(values) -> np.ndarray:
    """Strings with missing values as ''."""
    return np.array(["" if pd.isna(v) else str(v) for v in values], dtype=object)


def events_features(events: pd.DataFrame) -> pd.DataFrame:
    """The per-point features of the events layer."""
    n = len(events)

    def column(name, default):
        return events[name].to_numpy() if name in events.columns else np.full(n, default)

    return pd.DataFrame(
        {
            col.EVENT_ID: column(col.EVENT_ID, -1),
            col.MODE: effective_blank(column(col.MODE, "")),
            col.P_NECROPTOTIC: pd.to_numeric(column(col.P_NECROPTOTIC, np.nan), errors="coerce"),
            REVIEWED_MODE: effective_blank(column(REVIEWED_MODE, "")),
            "call": effective_calls(events),
        }
    )


def events_points(
    events: pd.DataFrame, *, pixel_size_um: float | None, ndim: int = 3
) -> tuple[np.ndarray, dict]:
    """Point coordinates (frame, [z], y, x) and the styling kwargs of the events layer."""
    px = float(pixel_size_um or 1.0)
    n = len(events)
    if n:
        cols = [events[col.FRAME]]
        if ndim == 4:
            cols.append(events[col.Z] if col.Z in events.columns else np.zeros(n))
        cols += [events[col.Y], events[col.X]]
        data = np.column_stack([np.asarray(c, dtype=float) for c in cols])
    else:
        data = np.zeros((0, ndim))
    colors = mode_colors(effective_calls(events))
    size = EVENT_MARKER_UM / px
    kwargs = {
        "features": events_features(events),
        # a ring in the colour of the call around the dying cell, which stays visible
        "face_color": np.zeros((n, 4), np.float32) if n else "transparent",
        "border_color": colors if n else "white",
        "border_width": 0.06,
        "border_width_is_relative": True,
        "symbol": "disc",
        "size": size,
        "text": {
            "string": "{event_id}",
            "color": "white",
            "size": 10,
            "anchor": "center",
            # the id sits at the upper left of the ring, not on the cell
            "translation": [0.0] * (ndim - 2) + [-0.45 * size, -0.45 * size],
        },
    }
    return data, kwargs


def events_layer(
    events: pd.DataFrame, folder: str | Path, *, pixel_size_um: float | None, interval_s, ndim=3
) -> LayerData:
    """The ``deaths`` points layer of a results folder."""
    data, kwargs = events_points(events, pixel_size_um=pixel_size_um, ndim=ndim)
    kwargs.update(
        name="deaths",
        **space(pixel_size_um, ndim=ndim),
        blending="translucent_no_depth",
        metadata={
            "deathtrack": {
                "kind": "events",
                "results": str(Path(folder).resolve()),
                "pixel_size_um": pixel_size_um,
                "interval_s": interval_s,
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
) -> list[LayerData]:
    """One napari Tracks layer per population: data (track_id, t, y, x), features, lineage."""
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
        data = df[[col.TRACK_ID, col.FRAME, col.Y, col.X]].to_numpy(float)
        features = df[[c for c in TRACK_FEATURES if c in df.columns]].reset_index(drop=True)
        graph: dict[int, list[int]] = {}
        if pop == col.CELLS and lineage is not None and len(lineage):
            ids = set(df[col.TRACK_ID].astype(int))
            for parent, child in zip(lineage[col.PARENT_ID], lineage[col.CHILD_ID]):
                if int(parent) in ids and int(child) in ids:
                    graph.setdefault(int(child), []).append(int(parent))
        kwargs = {
            "name": f"{pop} tracks",
            "features": features,
            "graph": graph,
            "tail_length": 8,
            "tail_width": 2,
            "colormap": "turbo" if pop == col.CELLS else "twilight",
            **space(pixel_size_um),
            "visible": pop == col.CELLS,
            "metadata": {
                "deathtrack": {
                    "kind": "tracks",
                    "population": pop,
                    "results": str(Path(folder).resolve()),
                    "interval_s": interval_s,
                }
            },
        }
        layers.append((data, kwargs, "tracks"))
    return layers


def labels_layers(folder: str | Path, *, pixel_size_um: float | None) -> list[LayerData]:
    """``labels_cells.tif`` and ``labels_immune.tif`` as lazy Labels layers (label = track_id)."""
    layers = []
    for pop, opacity in ((col.CELLS, 0.3), (col.IMMUNE, 0.4)):
        path = Path(folder) / f"labels_{pop}.tif"
        if not path.is_file():
            continue
        try:
            data = _lazy.label_array(path)
        except Exception as err:  # a damaged label file must not hide the other results
            logger.warning("%s: cannot read the labels (%s)", path, err)
            continue
        if data is None:
            continue
        layers.append(
            (
                data,
                {
                    "name": f"{pop} labels",
                    "opacity": opacity,
                    **space(pixel_size_um),
                    "metadata": {
                        "deathtrack": {
                            "kind": "labels",
                            "population": pop,
                            "results": str(Path(folder).resolve()),
                        }
                    },
                },
                "labels",
            )
        )
    return layers


def results_layer_data(folder: str | Path, *, include_image: bool = True) -> list[LayerData]:
    """Every layer of a results folder: the stack (when found), labels, tracks, deaths.

    Returns an empty list when ``folder`` is not a results folder.
    """
    folder = Path(folder)
    run = read_run_info(folder)
    if run is None:
        return []
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
                )
            except Exception as err:  # the results stay readable without their image
                logger.warning("%s: cannot open the stack %s (%s)", folder, stack, err)
        else:
            logger.info(
                "%s: stack %s not found; showing the results only", folder, run.get("stack")
            )
    layers += labels_layers(folder, pixel_size_um=px)
    tracks = read_table(folder, "tracks")
    if tracks is not None and len(tracks):
        layers += tracks_layers(
            tracks, read_table(folder, "lineage"), folder, pixel_size_um=px, interval_s=dt
        )
    events = read_table(folder, "events")
    if events is not None:
        layers.append(events_layer(events, folder, pixel_size_um=px, interval_s=dt))
    return layers
