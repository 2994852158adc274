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


# --- kinetics in minutes, imaging conditions, families (issue 13) ---------------------------


def _death_minutes(interval_s: float) -> pd.DataFrame:
    sim = simulate(
        SimulationConfig(
            seed=11,
            shape_yx=(160, 160),
            interval_s=interval_s,
            n_frames=int(round(150 * 60 / interval_s)) + 1,
            n_cells=10,
            n_immune=0,
            p_apoptotic=0.5,
            p_necroptotic=0.5,
            p_divide=0.0,
            apoptotic_shrink_min=(12.0, 12.0),
            necroptotic_swell_min=(16.0, 16.0),
        )
    )
    ev = sim.truth()["events"]
    assert len(ev) >= 4
    return ev.assign(lag_min=(ev[col.FRAME] - ev[col.ONSET_FRAME]) * interval_s / 60)


@pytest.mark.parametrize("interval_s", [60.0, 240.0])
def test_kinetics_are_in_minutes_at_any_interval(interval_s):
    """The same biology filmed at 1 and 4 min per frame: onset to death in minutes, not frames."""
    ev = _death_minutes(interval_s)
    dt = interval_s / 60
    nec = ev[ev[col.MODE] == col.NECROPTOTIC]
    # rupture 16 min after onset (+ 0-2 min), the death frame may be one frame later
    assert ((nec.lag_min >= 16 - dt) & (nec.lag_min <= 18 + 2 * dt)).all(), nec
    apo = ev[ev[col.MODE] == col.APOPTOTIC]
    # 15 % below baseline happens within the 12 min of shrinking
    assert ((apo.lag_min >= 0) & (apo.lag_min <= 12 + dt)).all(), apo
    assert (ev[col.ONSET_FRAME] * dt >= 8 - dt).all()  # first_onset_min = 8


def test_default_frame_counts_are_the_old_ones_at_two_minutes():
    cfg = SimulationConfig()
    assert cfg.interval_s == 120
    assert cfg.frames(cfg.post_death_min) == 18 and cfg.frames(cfg.first_onset_min) == 4
    assert [cfg.frames(m) for m in cfg.apoptotic_shrink_min] == [4, 7]
    assert [cfg.frames(m) for m in cfg.dwell_necroptotic_min] == [15, 40]


@pytest.mark.parametrize("interval_s", [30.0, 300.0])
def test_free_immune_cells_move_at_their_speed_in_um_per_min(interval_s):
    sim = simulate(
        SimulationConfig(
            seed=4,
            shape_yx=(400, 400),
            interval_s=interval_s,
            n_frames=25,
            n_cells=0,
            n_immune=12,
            immune_speed_um_per_min=4.0,
        )
    )
    step = np.hypot(*np.diff(sim.immune_pos, axis=0).transpose(2, 0, 1))
    speed = step.mean() / (interval_s / 60)
    assert 3.3 < speed < 4.3, speed  # steps of 0.6-1.4 x speed, a few shortened by crowding


def test_drift_moves_the_cells_and_their_truth_together():
    """Stage drift (systematic + jumps) is in the rendered positions and in the truth labels."""
    cfg = SimulationConfig(
        seed=3,  # a seed whose cell stays inside the field while it drifts
        shape_yx=(256, 256),
        n_frames=30,
        n_cells=1,
        n_immune=0,
        p_apoptotic=0,
        p_necroptotic=0,
        p_divide=0,
        cell_speed_um_per_min=0.0,
        drift_walk_um=0.0,
        drift_velocity_um_per_min=(0.25, -0.15),
        drift_jumps_per_hour=3.0,
        drift_jump_um=4.0,
        psf_sigma_um=0.0,
    )
    sim = simulate(cfg)
    px = cfg.pixel_size_um
    assert np.abs(sim.drift[-1] - sim.drift[0]).max() / px > 10
    cells = sim.truth()["cells"].set_index("frame")
    for t in (0, 12, 29):
        lab = sim.render_labels(t)[0] > 0
        assert lab.any() and not (lab[0].any() or lab[-1].any() or lab[:, 0].any()), t
        assert not lab[:, -1].any(), "the cell must stay inside the field for this test"
        moved = cells.loc[t, ["y", "x"]].to_numpy(float) - cells.loc[0, ["y", "x"]].to_numpy(float)
        np.testing.assert_allclose(moved, (sim.drift[t] - sim.drift[0]) / px, atol=0.6)
        # the truth label is where the image shows the cell
        img = sim.render_frame(t)[0].astype(float)
        bright = img > cfg.camera_offset + cfg.background * 1.3 + 0.3 * cfg.cell_brightness
        assert (bright & lab).sum() / (bright | lab).sum() > 0.8


def test_debris_is_drawn_but_is_not_a_cell():
    cfg = SimulationConfig(
        seed=5,
        shape_yx=(128, 128),
        n_frames=3,
        n_cells=0,
        n_immune=0,
        n_debris=25,
        debris_dye_fraction=0.5,
        psf_sigma_um=0.0,
        read_noise=0.0,
    )
    sim = simulate(cfg)
    frame = sim.render_frame(1).astype(float)
    labels = sim.render_labels(1)
    assert not labels[0].any() and not labels[1].any()
    assert sim.truth()["cells"].empty
    pos = np.round((sim.debris_pos[1] + sim.drift[1]) / cfg.pixel_size_um).astype(int)
    inside = [(y, x) for y, x in pos if 0 <= y < 128 and 0 <= x < 128]
    level = np.median([frame[0, y, x] for y, x in inside])
    assert level > cfg.camera_offset + cfg.background + 0.5 * cfg.cell_brightness
    in_dye = sim.debris_props[:, 2] > 0
    assert 0 < in_dye.sum() < len(in_dye)
    ideal = sim.ideal_frame(1)[0]
    assert ideal[2].max() > 0.2 * cfg.dye_brightness  # some debris shows in the dye channel


def _empty(**kw) -> SimulationConfig:
    base = dict(seed=1, shape_yx=(160, 160), n_frames=2, n_cells=0, n_immune=0, read_noise=0.0)
    return SimulationConfig(**{**base, **kw})


def test_vignetting_dims_the_corners_and_texture_is_large_and_faint():
    cfg = _empty(background=2000.0, background_gradient=0.0, vignetting=0.4)
    img = simulate(cfg).render_frame(0)[0].astype(float) - cfg.camera_offset
    centre, corner = img[70:90, 70:90].mean(), img[:6, :6].mean()
    assert corner / centre == pytest.approx(0.6, abs=0.03)
    cfg = _empty(background=2000.0, background_gradient=0.0, background_texture=0.1)
    sim = simulate(cfg)
    assert sim.background_map.std() == pytest.approx(0.1, rel=0.25)
    # large-scale: neighbouring pixels are almost equal
    assert np.abs(np.diff(sim.background_map, axis=1)).mean() < 0.01


def test_snr_is_the_ratio_asked_for():
    cfg = SimulationConfig(
        seed=6,
        shape_yx=(200, 200),
        n_frames=1,
        n_cells=8,
        n_immune=0,
        snr=5.0,
        camera_gain=2.0,
        read_noise=3.0,
        background=100.0,
        background_gradient=0.0,
        psf_sigma_um=0.0,
    )
    sim = simulate(cfg)
    img = sim.render_frame(0)[0].astype(float)
    lab = sim.render_labels(0)[0]
    bg = img[lab == 0]
    from scipy import ndimage as ndi

    far = ~ndi.binary_dilation(lab > 0, iterations=3)
    noise = img[far].std()
    signal = img[lab > 0].mean() - bg.mean()
    assert signal / noise == pytest.approx(5.0, rel=0.1)


def test_crosstalk_and_bleaching_per_channel():
    kw = dict(
        seed=8,
        shape_yx=(128, 128),
        n_frames=31,
        n_cells=5,
        n_immune=0,
        p_apoptotic=0,
        p_necroptotic=0,
        p_divide=0,
        read_noise=0.0,
        psf_sigma_um=0.0,
        background=10.0,
        background_gradient=0.0,
        cell_speed_um_per_min=0.0,
    )
    plain = simulate(SimulationConfig(**kw, bleach_per_min=0.0))
    mixed = simulate(
        SimulationConfig(
            **kw,
            crosstalk={"cells_to_dye": 0.2},
            bleach_per_min=0.0,
            bleach_by_channel_per_min={"cells": 0.01},
        )
    )
    lab = plain.render_labels(0)[0] > 0
    a, b = plain.render_frame(0).astype(float), mixed.render_frame(0).astype(float)
    extra_dye = (b[2] - a[2])[lab].mean()
    assert extra_dye == pytest.approx(0.2 * (a[0][lab].mean() - a[0][~lab].mean()), rel=0.1)
    # the cells channel loses 1 % per minute: 60 min later, 0.99 ** 60 of its signal
    last_a, last_b = plain.render_frame(30).astype(float), mixed.render_frame(30).astype(float)
    off = kw["background"] + plain.config.camera_offset
    ratio = (last_b[0][lab].mean() - off) / (last_a[0][lab].mean() - off)
    assert ratio == pytest.approx(0.99**60, rel=0.03)
    # the cells' light in the dye channel fades with the cells' fluorophore
    extra_dye = (last_b[2] - last_a[2])[lab].mean()
    cells_signal = last_b[0][lab].mean() - last_b[0][~lab].mean()
    assert extra_dye == pytest.approx(0.2 * cells_signal, rel=0.1)


def test_bad_crosstalk_and_bleach_keys_are_named():
    with pytest.raises(ValueError, match="crosstalk key 'cells_dye'"):
        SimulationConfig(crosstalk={"cells_dye": 0.1})
    with pytest.raises(ValueError, match="unknown role 'nucleus'"):
        SimulationConfig(bleach_by_channel_per_min={"nucleus": 0.1})


def test_clumped_cells_touch_many_neighbours():
    cfg = SimulationConfig(
        seed=3, shape_yx=(256, 256), n_frames=1, n_cells=120, min_gap_um=-3.0, clumping=0.9
    )
    lab = simulate(cfg).render_labels(0)[0]
    assert (lab > 0).mean() > 0.5
    pairs = set()
    for a, b in ((lab[:, :-1], lab[:, 1:]), (lab[:-1], lab[1:])):
        edge = (a != b) & (a > 0) & (b > 0)
        pairs |= set(zip(a[edge].tolist(), b[edge].tolist()))
    neighbours = {i: set() for i in np.unique(lab)[1:]}
    for a, b in pairs:
        neighbours[a].add(b)
        neighbours[b].add(a)
    assert np.median([len(v) for v in neighbours.values()]) >= 3


# --- families ---


def test_every_family_draws_valid_movies_within_the_caps():
    from deathtrack.simulate import FAMILIES, random_config

    for name in FAMILIES:
        for seed in (0, 1):
            cfg = random_config(name, seed)
            assert max(cfg.shape_yx) <= 512 and cfg.n_frames <= 150, (name, cfg.shape_yx)
            assert 0.25 <= cfg.pixel_size_um <= 1.3 and 30 <= cfg.interval_s <= 600
            assert cfg == random_config(name, seed)  # reproducible
            assert cfg.seed == seed
    assert random_config("baseline", 0) != random_config("baseline", 1000)


def test_families_push_their_axis():
    from deathtrack.simulate import random_config

    for seed in (0, 1, 2):
        assert 3 <= random_config("low_snr", seed).snr <= 6
        assert 0.25 <= random_config("fine_fast", seed).pixel_size_um <= 0.4
        assert 30 <= random_config("fine_fast", seed).interval_s <= 60
        assert 300 <= random_config("coarse_slow", seed).interval_s <= 600
        assert 0.9 <= random_config("coarse_slow", seed).pixel_size_um <= 1.3
        assert random_config("uneven_light", seed).vignetting >= 0.2
        m = random_config("macrophages_debris", seed)
        assert m.immune_radius_um >= 6 and m.immune_speed_um_per_min <= 3 and m.n_debris > 0
        d = random_config("drift_crosstalk", seed)
        assert min(d.crosstalk.values()) >= 0.05 and len(d.crosstalk) == 3
        assert "dye" not in random_config("no_dye", seed).channel_names
        nd = random_config("mitosis_no_deaths", seed)
        assert nd.p_apoptotic == nd.p_necroptotic == 0 and nd.p_divide >= 0.3


@pytest.mark.parametrize(
    "name", ["baseline", "dense", "fine_fast", "coarse_slow", "drift_crosstalk", "no_dye"]
)
def test_family_movies_hold_enough_deaths(name):
    from deathtrack.simulate import random_config

    sim = simulate(random_config(name, 0))
    deaths = sum(c.fate in (col.APOPTOTIC, col.NECROPTOTIC) for c in sim.cells)
    assert deaths >= 8, (name, deaths)
    if name == "dense":
        assert (sim.render_labels(0)[0] > 0).mean() >= 0.5
    if name == "drift_crosstalk":
        assert np.hypot(*sim.drift.T).max() / sim.config.pixel_size_um >= 10


def test_unknown_family_is_named():
    from deathtrack.simulate import random_config

    with pytest.raises(ConfigError, match="unknown simulation family 'sparse'"):
        random_config("sparse", 0)


def test_family_table_lists_every_family():
    from deathtrack.simulate import FAMILIES, family_table

    table = family_table()
    assert list(table.columns[2:]) == list(FAMILIES)
    snr = table.set_index("quantity").loc["snr"]
    assert snr["low_snr"] == "**3-6**" and snr["baseline"] == "8-20"
