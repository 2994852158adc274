"""Shared fixtures: small simulated movies with known truth, and the real-data folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repo; tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def small_sim():
    """A small default-scenario simulation (dynamics only; frames render on demand)."""
    from deathtrack.simulate import SimulationConfig, simulate

    return simulate(
        SimulationConfig(
            seed=3,
            shape_yx=(192, 192),
            n_frames=40,
            n_cells=12,
            n_immune=10,
            p_apoptotic=0.35,
            p_necroptotic=0.35,
            p_divide=0.15,
        )
    )


@pytest.fixture(scope="session")
def small_movie(tmp_path_factory, small_sim):
    """The small simulation written to disk: {'movie': Path, 'events': Path, ...}."""
    from deathtrack.simulate import write_simulation

    return write_simulation(small_sim, tmp_path_factory.mktemp("sim"), name="small")


#: the hand-built 3D results folder of :func:`hand_3d_results`
HAND_3D = {
    "px": 0.5,  # µm
    "dz": 2.0,  # µm
    "shape_tzyx": (5, 12, 48, 48),
    "event_frame": 2,
    "dying": {"track_id": 1, "z": 3.0, "y": 24.0, "x0": 16.0, "dx": 2.0, "r_um": 4.0},
    "other": {"track_id": 2, "z": 9.5, "y": 24.0, "x": 24.0, "r_um": 5.0},
    "z_range": (1, 6),  # the dying cell's centre ± its radius: slices 1..5
}


def _hand_3d_ball(shape_zyx, z, y, x, r_um, px, dz):
    zz, yy, xx = np.meshgrid(*[np.arange(n, dtype=float) for n in shape_zyx], indexing="ij")
    return ((zz - z) * dz) ** 2 + ((yy - y) * px) ** 2 + ((xx - x) * px) ** 2 <= r_um**2


def write_hand_3d_results(folder: Path) -> Path:
    """A 3D results folder built by hand (no pipeline): a dying cell (track 1, moving 2
    pixels along x per frame, dim) at z = 3 and, at the same (y, x) but at z = 9.5, a
    brighter cell (track 2), with the movie (cells, dye channels), labels (T, Z, Y, X),
    tracks, one event (track 1 at frame 2) and run.json. Returns the results folder."""
    import json

    import pandas as pd

    from deathtrack import columns as col
    from deathtrack.io import write_labels, write_ome_tiff

    h = HAND_3D
    px, dz = h["px"], h["dz"]
    T, Z, Y, X = h["shape_tzyx"]
    d, o = h["dying"], h["other"]
    movie = np.full((T, 2, Z, Y, X), 100, np.uint16)
    labels = np.zeros((T, Z, Y, X), np.int32)
    rows = []
    for t in range(T):
        x1 = d["x0"] + d["dx"] * t
        a = _hand_3d_ball((Z, Y, X), d["z"], d["y"], x1, d["r_um"], px, dz)
        b = _hand_3d_ball((Z, Y, X), o["z"], o["y"], o["x"], o["r_um"], px, dz)
        movie[t, 0][a] = 1000
        movie[t, 0][b] = 5000
        movie[t, 1][a] = 100 + 300 * (t >= h["event_frame"])  # dye taken up at death
        labels[t][a] = d["track_id"]
        labels[t][b] = o["track_id"]
        for tid, z, y, x, r in (
            (d["track_id"], d["z"], d["y"], x1, d["r_um"]),
            (o["track_id"], o["z"], o["y"], o["x"], o["r_um"]),
        ):
            rows.append(
                {
                    col.FRAME: t,
                    col.TRACK_ID: tid,
                    col.POPULATION: col.CELLS,
                    col.T_S: 60.0 * t,
                    col.Y: y,
                    col.X: x,
                    col.Y_UM: y * px,
                    col.X_UM: x * px,
                    col.AREA_UM2: np.pi * r**2,
                    col.Z: z,
                    col.Z_UM: z * dz,
                    "volume_um3": 4 / 3 * np.pi * r**3,
                }
            )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stack = folder.parent / "hand3d.ome.tif"
    write_ome_tiff(
        stack,
        movie,
        channel_names=["cells", "dye"],
        pixel_size_um=px,
        interval_s=60.0,
        z_step_um=dz,
    )
    write_labels(folder / "labels_cells.tif", labels)
    pd.DataFrame(rows).to_csv(folder / "tracks.csv", index=False)
    f = h["event_frame"]
    ev = {
        col.EVENT_ID: 1,
        col.TRACK_ID: d["track_id"],
        col.FRAME: f,
        col.T_S: 60.0 * f,
        col.Y: d["y"],
        col.X: d["x0"] + d["dx"] * f,
        col.Y_UM: d["y"] * px,
        col.X_UM: (d["x0"] + d["dx"] * f) * px,
        col.Z: d["z"],
        col.Z_UM: d["z"] * dz,
        col.MODE: col.NECROPTOTIC,
        col.P_NECROPTOTIC: 0.9,
        col.ONSET_FRAME: 1,
    }
    pd.DataFrame([ev]).to_csv(folder / "events.csv", index=False)
    pd.DataFrame(columns=[col.PARENT_ID, col.CHILD_ID, col.FRAME]).to_csv(
        folder / "lineage.csv", index=False
    )
    run = {
        "deathtrack_run_version": 2,
        "stack": str(stack.resolve()),
        "stem": folder.name,
        "status": "ok",
        "input": {
            "path": str(stack.resolve()),
            "axes": "TCZYX",
            "shape": [T, 2, Z, Y, X],
            "n_frames": T,
            "calibration": {"pixel_size_um": px, "interval_s": 60.0, "z_step_um": dz},
            "channel_names": ["cells", "dye"],
            "roles": {"cells": 0, "dye": 1},
        },
        "counts": {"n_frames": T, "n_events": 1},
    }
    (folder / "run.json").write_text(json.dumps(run))
    return folder


@pytest.fixture
def hand_3d_results(tmp_path) -> Path:
    """:func:`write_hand_3d_results` in a fresh temporary folder."""
    return write_hand_3d_results(tmp_path / "hand3d")


@pytest.fixture
def hand3d() -> dict:
    """What :func:`write_hand_3d_results` draws (:data:`HAND_3D`)."""
    return HAND_3D


@pytest.fixture
def threads_only(monkeypatch):
    """Forbid helper processes (a call of ``deathtrack.pipeline._helper_pool`` fails the
    test) and give ``watch(module, name)``: that function wrapped so that it lists the
    names of the threads that call it (the list is returned)."""
    import threading

    import deathtrack.pipeline as pl

    def no_processes(helpers):
        raise AssertionError("a helper process was asked for")

    monkeypatch.setattr(pl, "_helper_pool", no_processes)

    def watch(module, name: str) -> list[str]:
        used: list[str] = []
        func = getattr(module, name)

        def spy(*args, **kwargs):
            used.append(threading.current_thread().name)
            return func(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)
        return used

    return watch
