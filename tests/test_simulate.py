"""The simulator's truth must obey the biology it claims (DESIGN.md)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deathtrack import columns as col
from deathtrack.errors import ConfigError
from deathtrack.simulate import SimulationConfig, preset, simulate


def _area(cells: pd.DataFrame, cell_id: int, frame: int) -> float:
    row = cells[(cells.cell_id == cell_id) & (cells.frame == frame)]
    return float(row.area_um2.iloc[0]) if len(row) else np.nan


def _reporter_mean(sim, cell_id: int, frame: int) -> float:
    ideal, labels, _ = sim.ideal_frame(frame)
    mask = labels == cell_id
    return float(ideal[0][mask].mean())


def test_same_seed_same_movie_and_truth(small_sim):
    again = simulate(small_sim.config)
    np.testing.assert_array_equal(small_sim.render_frame(17), again.render_frame(17))
    for key, df in small_sim.truth().items():
        pd.testing.assert_frame_equal(df, again.truth()[key], check_exact=True)


def test_other_seed_other_movie(small_sim):
    other = simulate(small_sim.config.model_copy(update={"seed": 4}))
    assert not np.array_equal(small_sim.render_frame(5), other.render_frame(5))


def test_frame_shape_dtype_and_channels(small_sim):
    frame = small_sim.render_frame(0)
    assert frame.shape == (3, 192, 192)
    assert frame.dtype == np.uint16
    assert small_sim.config.channel_names == ["cells", "immune", "dye"]
    no_dye = SimulationConfig(with_dye=False, with_caspase=True)
    assert no_dye.channel_names == ["cells", "immune", "caspase"]


def test_scenario_has_every_fate(small_sim):
    ev = small_sim.truth()["events"]
    assert set(ev[col.MODE]) == {col.APOPTOTIC, col.NECROPTOTIC}
    assert len(small_sim.truth()["lineage"]) >= 2


def test_apoptotic_cells_shrink_brighten_and_dye_late(small_sim):
    truth = small_sim.truth()
    cells, ev = truth["cells"], truth["events"]
    apo = ev[ev[col.MODE] == col.APOPTOTIC]
    assert len(apo) >= 2
    for e in apo.itertuples():
        base = e.baseline_area_um2
        # the death frame is the first frame >= 15 % below the pre-onset baseline
        assert _area(cells, e.cell_id, e.frame) <= 0.85 * base
        for f in range(e.onset_frame, e.frame):
            assert _area(cells, e.cell_id, f) > 0.85 * base
        assert e.onset_frame <= e.frame
        # the reporter concentrates as the cell shrinks
        before = _reporter_mean(small_sim, e.cell_id, e.onset_frame - 1)
        assert _reporter_mean(small_sim, e.cell_id, e.frame) > 1.05 * before
        # the dye comes late (secondary necrosis) or not within the movie
        assert np.isnan(e.dye_frame) or e.dye_frame >= e.frame + 5


def test_necroptotic_cells_swell_then_rupture_with_abrupt_dye(small_sim):
    truth = small_sim.truth()
    cells, ev = truth["cells"], truth["events"]
    nec = ev[ev[col.MODE] == col.NECROPTOTIC]
    assert len(nec) >= 2
    for e in nec.itertuples():
        swollen = _area(cells, e.cell_id, e.frame - 1)
        assert swollen >= 1.2 * e.baseline_area_um2
        # at least half of the reporter's drop has happened by the death frame
        pre = _reporter_mean(small_sim, e.cell_id, e.frame - 2)
        at = _reporter_mean(small_sim, e.cell_id, e.frame)
        ghost = small_sim.config.ghost_level * small_sim.config.cell_brightness
        assert at <= pre - 0.5 * (pre - ghost) + 1e-3
        # the ghost stays: the cell keeps its label after rupture
        assert not np.isnan(_area(cells, e.cell_id, e.frame + 3))
        assert e.dye_frame - e.frame in (-1, 0, 1)


def test_states_follow_truth_frames(small_sim):
    truth = small_sim.truth()
    cells, ev = truth["cells"], truth["events"]
    for e in ev.itertuples():
        rows = cells[cells.cell_id == e.cell_id].set_index("frame")["state"]
        assert rows.loc[e.frame] == "dead"
        assert rows.loc[e.onset_frame - 1] == "alive"
        assert (rows.loc[e.onset_frame : e.frame - 1] == "dying").all()


def test_divisions_have_two_daughters_and_no_death(small_sim):
    truth = small_sim.truth()
    lin, cells = truth["lineage"], truth["cells"]
    assert (lin.groupby(col.PARENT_ID).size() == 2).all()
    for parent, group in lin.groupby(col.PARENT_ID):
        div = int(group[col.FRAME].iloc[0])
        assert cells[cells.cell_id == parent].frame.max() == div - 1
        for child in group[col.CHILD_ID]:
            assert cells[cells.cell_id == child].frame.min() == div
    assert not set(lin[col.PARENT_ID]) & set(truth["events"].cell_id)


def test_recruitment_stronger_to_necroptotic_on_average():
    diffs = []
    for seed in (1, 2):
        sim = simulate(
            SimulationConfig(
                seed=seed, n_frames=45, p_apoptotic=0.4, p_necroptotic=0.4, p_divide=0.0
            )
        )
        rec, ev = sim.truth()["recruitment"], sim.truth()["events"]
        after = rec[rec[col.DT] > 0].merge(ev[[col.EVENT_ID, col.MODE]])
        means = after.groupby(col.MODE)[col.N_WITHIN_R].mean()
        diffs.append(means[col.NECROPTOTIC] - means[col.APOPTOTIC])
    assert min(diffs) > 0.5


def test_ignore_scenario_recruits_nobody():
    sim = simulate(preset("ignore", seed=5, n_frames=40))
    assert (sim.immune_target == 0).all()
    assert not sim.immune_arrested.any()


def test_recruitment_table_counts_match_positions(small_sim):
    truth = small_sim.truth()
    rec, ev, imm = truth["recruitment"], truth["events"], truth["immune"]
    e = ev.iloc[0]
    r_px = small_sim.config.truth_radius_um / small_sim.config.pixel_size_um
    for dt in (-3, 0, 5):
        frame = imm[imm.frame == e.frame + dt]
        expected = int((np.hypot(frame.y - e.y, frame.x - e.x) <= r_px).sum())
        got = rec[(rec.event_id == e.event_id) & (rec.dt == dt)].n_within_r.iloc[0]
        assert got == expected
    assert (rec[col.N_CONTACT] <= rec[col.N_WITHIN_R] + 2).all()


def test_no_deaths_and_divisions_presets():
    sim = simulate(preset("no_deaths", seed=0, n_frames=20))
    assert sim.truth()["events"].empty
    sim = simulate(preset("divisions", seed=0, n_frames=30))
    assert sim.truth()["events"].empty
    assert len(sim.truth()["lineage"]) >= 2


@pytest.mark.parametrize(
    "kwargs",
    [dict(n_cells=0, n_immune=0), dict(n_frames=1), dict(n_cells=1, n_immune=0, shape_yx=(32, 32))],
)
def test_edge_cases_render(kwargs):
    sim = simulate(SimulationConfig(**kwargs))
    frame = sim.render_frame(0)
    assert frame.shape[0] == len(sim.config.channel_names)
    truth = sim.truth()
    assert list(truth["recruitment"].columns) == [
        col.EVENT_ID,
        col.DT,
        col.T_REL_S,
        col.N_WITHIN_R,
        col.N_CONTACT,
    ]
    if kwargs.get("n_cells") == 0:
        assert truth["cells"].empty and (frame[0] < 400).all()


def test_labels_match_truth_table(small_sim):
    cells_lab, immune_lab = small_sim.render_labels(12)
    table = small_sim.truth()["cells"]
    ids = set(np.unique(cells_lab)) - {0}
    assert ids == set(table[table.frame == 12].cell_id)
    assert set(np.unique(immune_lab)) - {0} <= set(range(1, small_sim.config.n_immune + 1))


def test_invalid_config_names_the_key():
    with pytest.raises(ValueError, match="p_apoptotic \\+ p_necroptotic \\+ p_divide must be <= 1"):
        SimulationConfig(p_apoptotic=0.6, p_necroptotic=0.6)
    with pytest.raises(ConfigError, match="unknown simulation preset 'nope'"):
        preset("nope")


def test_frame_out_of_range(small_sim):
    with pytest.raises(IndexError, match="frame 40 is outside the movie \\(0..39\\)"):
        small_sim.render_frame(40)
