"""Shared fixtures: small simulated movies with known truth, and the real-data folder."""

from __future__ import annotations

from pathlib import Path

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
