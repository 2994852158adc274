"""Death detection and the apoptotic / necroptotic call on tracks with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deathtrack.config import DeathConfig
from deathtrack.death import EVENT_COLUMNS, detect_deaths

T = 30


def _track(tid, area, reporter, dye=None, border=None, y=50.0, x=50.0):
    n = len(area)
    return pd.DataFrame(
        {
            "frame": np.arange(n),
            "track_id": tid,
            "y": y,
            "x": x,
            "y_um": y * 0.65,
            "x_um": x * 0.65,
            "area_um2": area,
            "cells_mean": reporter,
            "dye_mean": np.zeros(n) + 100 if dye is None else dye,
            "circularity": 0.85,
            "solidity": 0.95,
            "n_fragments": 1,
            "touches_border": np.zeros(n, bool) if border is None else border,
        }
    )


def _steady(tid, **kw):
    return _track(tid, np.full(T, 250.0), np.full(T, 600.0), y=20.0 + 10 * tid, **kw)


def _with_others(*tracks):
    # a few healthy cells set the per-frame reporter median (as in a real field)
    return pd.concat([*tracks, *(_steady(k) for k in range(10, 16))], ignore_index=True)


def test_apoptosis_shrink_and_concentrate():
    area = np.r_[np.full(12, 250.0), 250 - 20 * np.arange(1, 6), np.full(T - 17, 150.0)]
    rep = 600 * (250 / area) ** 0.6
    dye = np.r_[np.full(26, 100.0), np.full(T - 26, 900.0)]
    ev = detect_deaths(_with_others(_track(1, area, rep, dye)), interval_s=120)
    assert len(ev) == 1
    e = ev.iloc[0]
    # area 250 -> 230, 210, 190 (<= 0.85 x 250 = 212.5 at frame 13)
    assert (e["mode"], e.frame, e.track_id) == ("apoptotic", 13, 1)
    assert e.onset_frame == 12 and e.dye_frame == 26 and e.p_necroptotic < 0.2
    assert e.t_s == 13 * 120
    assert list(ev.columns) == EVENT_COLUMNS


def test_necroptosis_swell_then_rupture():
    area = np.r_[np.full(10, 250.0), 250 + 40 * np.arange(1, 6), np.full(T - 15, 450.0)]
    rep = np.r_[600 * 250 / area[:18], [150.0] * (T - 18)]  # rupture at frame 18
    dye = np.r_[np.full(18, 100.0), np.full(T - 18, 900.0)]
    ev = detect_deaths(_with_others(_track(2, area, rep, dye)), interval_s=60)
    assert len(ev) == 1
    e = ev.iloc[0]
    assert (e["mode"], e.frame) == ("necroptotic", 18)
    assert e.onset_frame == 10 and e.dye_frame == 18 and e.p_necroptotic > 0.8
    assert e.area_ratio_before == pytest.approx(1.8) and e.reporter_drop == pytest.approx(
        1 - 150 / (600 * 250 / 450)
    )


def test_half_drop_defines_the_rupture_frame():
    area = np.r_[np.full(10, 250.0), 250 + 40 * np.arange(1, 6), np.full(T - 15, 450.0)]
    rep = 600 * 250 / area
    rep[17] = rep[16] - 0.7 * (rep[16] - 150)  # 70 % of the drop already at frame 17
    rep[18:] = 150.0
    ev = detect_deaths(_with_others(_track(3, area, rep)), interval_s=60)
    assert ev.frame.tolist() == [17]


def test_photobleaching_is_not_a_death():
    bleach = 0.97 ** np.arange(T)
    tracks = pd.concat(
        [_track(k, np.full(T, 250.0), 600 * bleach, y=20.0 + 10 * k) for k in range(1, 8)],
        ignore_index=True,
    )
    assert detect_deaths(tracks, interval_s=60).empty


def test_division_and_leaving_the_field_are_not_deaths():
    area = np.r_[np.full(25, 250.0), [220.0, 200.0, 190.0, 180.0, 180.0]]  # rounds up, then splits
    parent = _track(1, area, np.full(T, 600.0))
    lineage = pd.DataFrame({"parent_id": [1, 1], "child_id": [7, 8], "frame": [T, T]})
    assert detect_deaths(_with_others(parent), lineage, interval_s=60).empty
    area = np.r_[np.full(15, 250.0), np.linspace(230, 120, T - 15)]
    border = np.r_[np.zeros(15, bool), np.ones(T - 15, bool)]
    leaving = _track(2, area, np.full(T, 600.0), border=border)
    assert detect_deaths(_with_others(leaving), interval_s=60).empty


def test_short_and_empty_tracks():
    short = _track(1, np.r_[250.0, 250, 100, 100], np.full(4, 600.0))
    assert detect_deaths(_with_others(short), interval_s=60).empty
    empty = detect_deaths(_track(1, [], [])[0:0], interval_s=60)
    assert empty.empty and list(empty.columns) == EVENT_COLUMNS


def test_uncertain_when_the_evidence_is_mixed():
    # shrinks like apoptosis but loses its reporter abruptly like a rupture, no dye channel
    area = np.r_[np.full(12, 250.0), np.full(T - 12, 150.0)]
    rep = np.r_[np.full(12, 600.0), np.full(T - 12, 300.0)]
    df = _with_others(_track(1, area, rep)).drop(columns="dye_mean")
    ev = detect_deaths(df, config=DeathConfig(uncertain_margin=0.45), interval_s=60)
    assert ev["mode"].tolist() == ["uncertain"]


def test_missing_columns_message():
    with pytest.raises(ValueError, match=r"`tracks` lacks column\(s\) \['cells_mean'\]"):
        detect_deaths(_track(1, np.ones(8), np.ones(8)).drop(columns="cells_mean"), interval_s=60)


def test_cell_drifting_at_the_border_is_not_apoptotic_but_a_dying_one_is():
    border = np.ones(T, bool)
    area = np.r_[np.full(12, 250.0), np.full(T - 12, 190.0)]  # visible area lost at the edge
    drifting = _track(1, area, np.full(T, 600.0), border=border)
    assert detect_deaths(_with_others(drifting), interval_s=60).empty
    dying = _track(2, area, 600 * (250 / area) ** 0.6, border=border)  # concentrates: apoptosis
    assert detect_deaths(_with_others(dying), interval_s=60)["mode"].tolist() == ["apoptotic"]


def test_transient_shrinkage_that_recovers_is_not_a_death():
    area = np.r_[
        np.full(12, 250.0), np.full(4, 180.0), np.full(T - 16, 250.0)
    ]  # squeezed, then back
    ev = detect_deaths(_with_others(_track(1, area, 600 * (250 / area) ** 0.6)), interval_s=60)
    assert ev.empty


def test_shrinkage_is_timed_from_the_level_before_it_not_from_a_faulty_start():
    """Two faults of the segmentation made apoptosis seem to begin 10-20 frames early on
    dense development seeds 10 and 15 (a false call and a missed death each): the track's
    first frames drawn larger than the cell (a neighbour's piece in the outline), and a
    seam through the cell for a few frames that the outline recovers from."""
    gradual = np.r_[np.full(16, 200.0), [180.0, 165.0, 150.0], np.full(T - 19, 150.0)]
    rep = 600 * (200 / gradual) ** 0.6  # concentrates as it shrinks (x 1.19)
    dye = np.r_[np.full(27, 100.0), np.full(T - 27, 900.0)]
    # at 2 min a frame the baseline is the first 5 frames: 250 sets 0.85 x 250 = 212, below
    # which the cell's own 215 dips to 190 for three frames, before it shrinks to 150
    big_start = np.r_[
        np.full(5, 250.0), np.full(6, 215.0), np.full(3, 190.0), np.full(2, 215.0), gradual[16:]
    ]
    big_start[16:19] = [190.0, 170.0, 150.0]
    seam = gradual.copy()
    seam[5:8] = 150.0  # cut for three frames, then whole again
    for area in (gradual, big_start, seam):
        ev = detect_deaths(_with_others(_track(1, area, rep, dye)), interval_s=120)
        assert (ev["mode"].tolist(), ev.frame.tolist()) == (["apoptotic"], [17])


def test_the_reporter_may_concentrate_over_the_frames_a_shrinkage_lasts():
    """With fast frames the reporter concentrates over the frames after the area first
    falls below 0.85 x the baseline (fine_fast development seed 1: 1.12 there, 1.4 four
    frames later); a live cell the segmentation trims stays as it was or a little above
    (1.09-1.11 on dense development seeds 0, 4 and 15)."""
    area = np.r_[np.full(12, 250.0), np.linspace(240, 160, 9), np.full(T - 21, 160.0)]
    late = 600 * np.r_[np.full(14, 1.0), np.linspace(1.05, 1.4, 5), np.full(T - 19, 1.4)]
    ev = detect_deaths(_with_others(_track(1, area, late)), interval_s=30)
    assert ev["mode"].tolist() == ["apoptotic"]
    trimmed = 600 * np.r_[np.full(12, 1.0), np.full(T - 12, 1.1)]
    assert detect_deaths(_with_others(_track(1, area, trimmed)), interval_s=30).empty


def test_a_division_the_tracker_missed_is_not_apoptosis():
    """The track goes on with one daughter: half the area in one frame, centroid jumps."""
    area = np.r_[np.full(14, 250.0), np.full(T - 14, 140.0)]
    rep = 600 * np.r_[np.full(11, 1.0), np.full(3, 1.3), np.full(T - 14, 1.1)]  # rounds up
    track = _track(1, area, rep)
    track.loc[track.frame >= 14, "x_um"] += 5.0  # the daughter's centre, beside the mother's
    assert detect_deaths(_with_others(track), interval_s=60).empty
    # the same shrinkage in place, over a few frames, is apoptosis
    gradual = np.r_[np.full(12, 250.0), [220.0, 190.0, 165.0], np.full(T - 15, 140.0)]
    dying = _track(2, gradual, 600 * (250 / gradual) ** 0.6)
    assert detect_deaths(_with_others(dying), interval_s=60)["mode"].tolist() == ["apoptotic"]


def test_an_apoptotic_cell_falling_into_bodies_is_a_death_when_it_takes_up_the_dye():
    """Shrinks in place over three frames, then the track jumps to its largest body (a
    third of the area, its centre beside the cell's): what a missed division also shows,
    except that the dead-cell dye comes later. Found on coarse development movies
    (9-10 min frames), where the shrinkage and the break-up are one frame apart."""
    area = np.r_[np.full(12, 250.0), [205.0, 185.0, 180.0], np.full(T - 15, 70.0)]
    rep = 600 * (250 / np.maximum(area, 180.0)) ** 0.6  # concentrates as it shrinks
    dye = np.r_[np.full(22, 100.0), np.full(T - 22, 900.0)]
    track = _track(1, area, rep, dye)
    track.loc[track.frame >= 15, "x_um"] += 5.0  # the largest body, beside the cell's centre
    ev = detect_deaths(_with_others(track), interval_s=540)
    assert (ev["mode"].tolist(), ev.frame.tolist(), ev.dye_frame.tolist()) == (
        ["apoptotic"],
        [12],
        [22],
    )
    # the reporter as it was (a live cell's outline cut by a neighbour's merge or split,
    # and the dye of a dying neighbour later): not a death (found on dense development
    # seed 3, where it called one necroptotic death twice)
    flat = _track(1, area, np.full(T, 600.0), dye).assign(x_um=track.x_um)
    assert detect_deaths(_with_others(flat), interval_s=540).empty
    # no dye: the same track reads as a division the tracker missed
    assert detect_deaths(
        _with_others(_track(1, area, rep).assign(x_um=track.x_um)), interval_s=540
    ).empty


def test_an_outline_that_shrinks_with_no_sign_of_apoptosis_is_not_a_death():
    """A live cell whose outline the segmentation trims (a neighbour pressing, the seam
    drawn elsewhere): the area falls and stays down, but the reporter does not concentrate,
    the cell stays whole and takes up no dye. Any one of those signs makes it apoptosis."""
    area = np.r_[np.full(12, 250.0), np.full(T - 12, 190.0)]
    trimmed = _track(1, area, np.full(T, 600.0))
    assert detect_deaths(_with_others(trimmed), interval_s=60).empty
    # ...unless this check is off
    off = DeathConfig(shrink_min_concentration=1.0)
    assert len(detect_deaths(_with_others(trimmed), config=off, interval_s=60)) == 1
    concentrates = _track(2, area, 600 * (250 / area) ** 0.6)
    fragments = _track(3, area, np.full(T, 600.0))
    fragments.loc[fragments.frame >= 14, "n_fragments"] = 3
    dye = _track(4, area, np.full(T, 600.0), dye=np.r_[np.full(26, 100.0), np.full(T - 26, 900.0)])
    for track in (concentrates, fragments, dye):
        ev = detect_deaths(_with_others(track), interval_s=60)
        assert ev["mode"].tolist() == ["apoptotic"], track.track_id.iloc[0]
    # an outline cut in two is not fragments (shrink_min_fragments 3: seen on dense
    # development seeds, where live cells whose outline a neighbour's edge cut in two were
    # called apoptotic)
    halves = fragments.assign(n_fragments=np.where(fragments.frame >= 14, 2, 1))
    assert detect_deaths(_with_others(halves), interval_s=60).empty
    two = DeathConfig(shrink_min_fragments=2)
    assert len(detect_deaths(_with_others(halves), config=two, interval_s=60)) == 1


def _measured(*tracks):
    """:func:`_with_others` with the dye channel's background as the pipeline measures it
    (``dye_bg``): a live cell's dye is then 0, not the background's 100, which the
    reporter-to-dye crosstalk correction would take for crosstalk."""
    return _with_others(*tracks).assign(dye_bg=100.0)


def _begins_at(start, track):
    """``track`` as one that begins at frame ``start`` (a cell the segmentation gave a new
    track: a merged pair came apart, a swollen cell was segmented whole again)."""
    return track.assign(frame=track["frame"] + start)


def test_a_rupture_in_a_track_s_first_frames_is_a_death_when_the_dye_comes_with_it():
    """Its baseline is then the frame before the rupture; the dye, above every frame before
    it and staying so, is what a segmentation fault never gives."""
    n = 14  # min_track_min 12 minutes at 60 s
    area = np.full(n, 250.0)
    rep = np.r_[600.0, np.full(n - 1, 150.0)]
    dye = np.r_[100.0, np.full(n - 1, 900.0)]
    ev = detect_deaths(_measured(_begins_at(10, _track(1, area, rep, dye))), interval_s=60)
    assert ev[["frame", "mode", "track_id"]].values.tolist() == [[11, "necroptotic", 1]]
    assert ev.dye_frame.tolist() == [11] and ev.reporter_drop.iloc[0] == pytest.approx(0.75)
    # the same drop with no dye coming: a track's first frames are too few to call it
    no_dye = _track(1, area, rep, np.full(n, 100.0))
    assert detect_deaths(_measured(_begins_at(10, no_dye)), interval_s=60).empty


def test_a_rupture_after_a_shrinkage_that_was_not_a_death_is_the_death():
    """A cell at the field's edge whose visible outline shrinks (not apoptosis: the reporter
    does not concentrate), then ruptures and takes up the dye at once: the rupture is
    called, as for any cell. Without the dye, nothing is (at the edge, a reporter that
    seems to drop is the cell leaving)."""
    area = np.r_[np.full(8, 250.0), np.full(T - 8, 190.0)]
    rep = np.r_[np.full(20, 600.0), np.full(T - 20, 150.0)]
    dye = np.r_[np.full(20, 100.0), np.full(T - 20, 900.0)]
    border = np.r_[np.zeros(8, bool), np.ones(T - 8, bool)]
    ev = detect_deaths(_measured(_track(1, area, rep, dye, border=border)), interval_s=60)
    assert ev[["frame", "mode"]].values.tolist() == [[20, "necroptotic"]]
    leaving = _track(1, area, rep, border=border)
    assert detect_deaths(_measured(leaving), interval_s=60).empty


def test_one_death_called_on_two_pieces_of_a_cell_is_one_call():
    """The segmentation split a dying cell in two just before it ruptured: both pieces get
    new tracks, both rupture and take up the dye. One death. Two whole cells side by side
    (a sum of radii apart) that die in the same frame are two."""
    n = 14
    rep = np.r_[600.0, np.full(n - 1, 150.0)]
    dye = np.r_[100.0, np.full(n - 1, 900.0)]
    # pieces of 120 and 150 µm² (radii 6.2 and 6.9 µm) whose centres are 11 µm apart
    a = _begins_at(10, _track(1, np.full(n, 120.0), rep, dye))
    b = _begins_at(10, _track(2, np.full(n, 150.0), rep, dye, x=50 + 11 / 0.65))
    ev = detect_deaths(_measured(a, b), interval_s=60)
    assert len(ev) == 1 and ev.frame.tolist() == [11]
    # whole cells of 250 µm² (radius 8.9 µm) side by side, tracked from the start
    rep, dye = (
        np.r_[np.full(18, 600.0), np.full(T - 18, 150.0)],
        np.r_[np.full(18, 100.0), np.full(T - 18, 900.0)],
    )
    c = _track(3, np.full(T, 250.0), rep, dye)
    d = _track(4, np.full(T, 250.0), rep, dye, x=50 + 17.8 / 0.65)
    ev = detect_deaths(_measured(c, d), interval_s=60)
    assert sorted(ev.track_id.tolist()) == [3, 4] and set(ev.frame) == {18}
    # the same pieces 11 µm apart, but each tracked from the start: two cells, two deaths
    rep, dye = (
        np.r_[np.full(18, 600.0), np.full(T - 18, 150.0)],
        np.r_[np.full(18, 100.0), np.full(T - 18, 900.0)],
    )
    e = _track(5, np.full(T, 120.0), rep, dye)
    f = _track(6, np.full(T, 150.0), rep, dye, x=50 + 11 / 0.65)
    assert len(detect_deaths(_measured(e, f), interval_s=60)) == 2


def test_the_ghost_of_a_cell_already_dead_is_not_a_second_death():
    """A cell ruptures and takes up the dye (its death); later its ghost gets a track of its
    own, in its place, dye-positive from its first frame; the ghost fades, which looks like
    a rupture with no dye rise. One death. The same fading track elsewhere is called."""
    rep = np.r_[np.full(15, 600.0), np.full(T - 15, 150.0)]
    dye = np.r_[np.full(15, 100.0), np.full(T - 15, 900.0)]
    cell = _track(1, np.full(T, 250.0), rep, dye)
    n = 12  # frames 18-29: the ghost's track; it fades at frame 25
    fading = np.r_[np.full(7, 300.0), np.full(n - 7, 100.0)]

    def ghost(x):
        return _begins_at(18, _track(2, np.full(n, 250.0), fading, np.full(n, 900.0), x=x))

    ev = detect_deaths(_measured(cell, ghost(50.0)), interval_s=60)
    assert ev[["track_id", "frame"]].values.tolist() == [[1, 15]]
    elsewhere = detect_deaths(_measured(cell, ghost(50.0 + 30 / 0.65)), interval_s=60)
    assert elsewhere[["track_id", "frame"]].values.tolist() == [[1, 15], [2, 25]]


def test_the_remains_of_a_dead_cell_taking_up_the_dye_later_are_not_a_second_death():
    """A cell dies (frame 15); its remains get a track of their own from frame 18, within the
    dead cell's outline, and lose their reporter as the dye rises in them at frame 25 (an
    apoptotic cell's bodies taking up the dye hours later). One death. The same track 1.2
    dead-cell radii away, beyond the dead cell's outline, is another cell: two deaths."""
    rep = np.r_[np.full(15, 600.0), np.full(T - 15, 150.0)]
    dye = np.r_[np.full(15, 100.0), np.full(T - 15, 900.0)]
    cell = _track(1, np.full(T, 250.0), rep, dye)  # radius 8.9 µm
    n = 20  # frames 18-37: the later track; reporter lost and dye up at frame 25

    def later(dx_um):
        return _begins_at(
            18,
            _track(
                2,
                np.full(n, 250.0),
                np.r_[np.full(7, 600.0), np.full(n - 7, 150.0)],
                np.r_[np.full(7, 100.0), np.full(n - 7, 900.0)],
                x=50.0 + dx_um / 0.65,
            ),
        )

    ev = detect_deaths(_measured(cell, later(4.0)), interval_s=60)
    assert ev[["track_id", "frame"]].values.tolist() == [[1, 15]]
    apart = detect_deaths(_measured(cell, later(1.2 * 8.92)), interval_s=60)
    assert apart[["track_id", "frame"]].values.tolist() == [[1, 15], [2, 25]]


def test_the_dye_rise_is_read_in_units_of_the_dye_s_pixel_noise():
    """``dye_min_rise_sd`` counts the dye's pixel noise within cells (``dye_std``), so the
    same movie gives the same calls in any camera's units: 16-bit counts, 8-bit, or float
    scaled to 0-1 (where a threshold in raw units would never see the dye)."""
    area = np.r_[np.full(12, 250.0), 250 - 20 * np.arange(1, 6), np.full(T - 17, 150.0)]
    rep = 600 * (250 / area) ** 0.6

    def movie(rise, scale):
        dye = np.r_[np.full(26, 100.0), np.full(T - 26, 100.0 + rise)]
        df = _measured(_track(1, area, rep, dye)).assign(dye_std=10.0)
        cols = ["cells_mean", "dye_mean", "dye_bg", "dye_std"]
        return df.assign(**{c: df[c] * scale for c in cols})

    for scale in (1.0, 255 / 4095, 1 / 65535):
        # 1.5 noise SDs: uptake; 0.5: not (the default is 1)
        ev = detect_deaths(movie(15.0, scale), interval_s=120)
        assert ev[["frame", "mode", "dye_frame"]].values.tolist() == [[13, "apoptotic", 26]]
        assert np.isnan(detect_deaths(movie(5.0, scale), interval_s=120).dye_frame).all()
    # without ``dye_std``, the unit is the spread of the dye across cells (here none, so
    # raw units are kept and any rise above 1 counts)
    ev = detect_deaths(movie(5.0, 1.0).drop(columns="dye_std"), interval_s=120)
    assert ev.dye_frame.tolist() == [26]


# --- deaths seen in the dye only (dye onsets) ------------------------------------------


def _noisy(shape, level, sd, seed=0):
    return np.random.default_rng(seed).normal(level, sd, shape).astype(np.float32)


def test_dye_spots_are_found_where_the_dye_is_with_their_area_in_square_microns():
    """A disc of 10 px (0.5 µm pixels: 78.5 µm²) and one of 2 px, 40 noise SDs above a
    background of 100: two spots, each where its disc is, the large one's area within
    15 %; no spot in a flat frame (no noise to scale by)."""
    from deathtrack.death import SPOT_COLUMNS, find_dye_spots

    yy, xx = np.mgrid[:200, :200]
    dye = _noisy((200, 200), 100.0, 5.0)
    dye[(yy - 60) ** 2 + (xx - 140) ** 2 < 100] += 200
    dye[(yy - 150) ** 2 + (xx - 40) ** 2 < 4] += 200
    rep = _noisy((200, 200), 50.0, 5.0, seed=1)
    spots = find_dye_spots(dye, rep, pixel_size_um=0.5, dye_bg=100.0, reporter_bg=50.0)
    assert spots.shape[1] == len(SPOT_COLUMNS)
    spots = spots[np.argsort(-spots[:, 2])]
    assert len(spots) == 2, spots
    y, x, area, peak, reporter = spots[0]
    assert abs(y - 60) < 1 and abs(x - 140) < 1
    assert abs(area - np.pi * 25) < 0.15 * np.pi * 25
    assert peak > 8 and abs(reporter) < 5  # no reporter there: its background only
    assert abs(spots[1, 0] - 150) < 1.5 and abs(spots[1, 1] - 40) < 1.5
    assert spots[1, 2] < 10
    flat = np.full((200, 200), 7.0, np.float32)
    assert find_dye_spots(flat, flat, pixel_size_um=0.5, dye_bg=7, reporter_bg=7).shape == (0, 5)


def test_the_reporter_s_crosstalk_into_the_dye_is_not_a_spot():
    """A live cell 1000 above background in the reporter shows at 10 % in the dye channel:
    a spot unless the crosstalk is taken out."""
    from deathtrack.death import find_dye_spots

    yy, xx = np.mgrid[:160, :160]
    cell = ((yy - 80) ** 2 + (xx - 80) ** 2 < 15**2) * 1000.0
    rep = _noisy((160, 160), 50.0, 5.0) + cell
    dye = _noisy((160, 160), 100.0, 5.0, seed=1) + 0.1 * cell
    kw = dict(pixel_size_um=0.65, dye_bg=100.0, reporter_bg=50.0)
    assert len(find_dye_spots(dye, rep, **kw)) == 1
    assert len(find_dye_spots(dye, rep, crosstalk=0.1, **kw)) == 0


def _spots(n, at=(), y=50.0, x=50.0, area=120.0, reporter=0.0):
    """``n`` frames of dye spots (as :func:`find_dye_spots` gives them): one of ``area`` µm²
    at (y, x) px in each frame of ``at``."""
    out = [np.zeros((0, 5)) for _ in range(n)]
    for t in at:
        out[t] = np.array([[y, x, area, 40.0, reporter]])
    return out


def _lost(last=12):
    """Track 1 (250 µm², as every cell here) whole and steady until frame ``last``, then no
    more of it: merged into a neighbour, or cut into pieces as it swelled."""
    return _track(1, np.full(last + 1, 250.0), np.full(last + 1, 600.0))


def test_a_cell_the_tracks_lost_is_a_necroptotic_death_when_the_dye_fills_its_place():
    """The tracks show no death (track 1 just ends at frame 12); from frame 14 on, a spot of
    half a cell takes up the dye where it was, with no reporter left: one necroptotic death
    at frame 14, on track 1, the dye at once. The same from a spot a tenth of a cell (the
    late dye of apoptotic bodies), a spot that comes for one frame, one where small spots
    were already, one at the image's edge, or with ``dye_onsets`` off: none."""
    df = _measured(_lost())
    kw = dict(interval_s=60, pixel_size_um=0.65, image_shape=(200, 200))
    assert detect_deaths(df, **kw).empty  # the tracks alone

    ev = detect_deaths(df, dye_spots=_spots(T, range(14, T)), **kw)
    assert ev[["track_id", "frame", "mode", "dye_frame"]].values.tolist() == [
        [1, 14, "necroptotic", 14.0]
    ]
    assert ev["reporter_drop"].iloc[0] == 1.0 and ev["dye_lag_min"].iloc[0] == 0.0
    assert np.isnan(ev["area_ratio_before"].iloc[0])  # no outline to measure
    assert list(ev.columns) == EVENT_COLUMNS

    for spots in (
        _spots(T, range(14, T), area=25.0),  # a tenth of a cell
        _spots(T, [14]),  # one frame only
    ):
        assert detect_deaths(df, dye_spots=spots, **kw).empty
    bodies = _spots(T, range(14, T))
    bodies[11] = np.array([[52.0, 49.0, 5.0, 12.0, 400.0]])  # an apoptotic body before
    assert detect_deaths(df, dye_spots=bodies, **kw).empty
    edge = _measured(_track(1, np.full(13, 250.0), np.full(13, 600.0), y=4.0))
    assert detect_deaths(edge, dye_spots=_spots(T, range(14, T), y=4.0), **kw).empty
    off = DeathConfig(dye_onsets=False)
    assert detect_deaths(df, config=off, dye_spots=_spots(T, range(14, T)), **kw).empty
    # without the pixel size or the frames' spots, the tracks alone
    assert detect_deaths(df, dye_spots=_spots(T, range(14, T)), interval_s=60).empty


def test_a_dye_onset_where_no_track_ended_has_no_track_id():
    """The spot appears where no track was (a cell never segmented apart from its
    neighbours): a death with an empty ``track_id`` (pandas' nullable integer), every other
    event keeping its own."""
    area = np.r_[np.full(10, 250.0), np.full(T - 10, 300.0)]  # swells, then ruptures
    rep = np.r_[np.full(15, 600.0), np.full(T - 15, 150.0)]
    dye = np.r_[np.full(15, 100.0), np.full(T - 15, 900.0)]
    df = _measured(_track(1, area, rep, dye, y=150.0, x=150.0))
    kw = dict(interval_s=60, pixel_size_um=0.65, image_shape=(200, 200))
    ev = detect_deaths(df, dye_spots=_spots(T, range(20, T), y=100.0, x=60.0), **kw)
    assert ev["frame"].tolist() == [15, 20]
    assert str(ev["track_id"].dtype) == "Int64"
    assert ev["track_id"].iloc[0] == 1 and pd.isna(ev["track_id"].iloc[1])
    # a track that ended there but already has a death of its own elsewhere (track 1,
    # ending at frame 19 near the spot) does not lend its id
    near = df[(df["track_id"] != 1) | (df["frame"] <= 19)].copy()
    moved = near["track_id"].eq(1) & near["frame"].ge(17)
    near.loc[moved, ["y", "x"]] = (100.0, 62.0)
    ev = detect_deaths(near, dye_spots=_spots(T, range(20, T), y=100.0, x=60.0), **kw)
    assert ev["frame"].tolist() == [15, 20] and pd.isna(ev["track_id"].iloc[1])


def test_a_death_both_a_track_and_the_dye_show_is_one_death_on_the_track():
    """A necroptotic rupture at frame 15 that the track shows; the dye fills the cell from
    frame 15 (its onset) and stays: one call, on track 1; and the same cell's dye seen again
    later (its remains) is no second death."""
    area = np.r_[np.full(10, 250.0), np.full(T - 10, 300.0)]
    rep = np.r_[np.full(15, 600.0), np.full(T - 15, 150.0)]
    dye = np.r_[np.full(15, 100.0), np.full(T - 15, 900.0)]
    df = _measured(_track(1, area, rep, dye))
    kw = dict(interval_s=60, pixel_size_um=0.65, image_shape=(200, 200))
    alone = detect_deaths(df, **kw)
    assert alone[["track_id", "frame"]].values.tolist() == [[1, 15]]
    spots = _spots(T, list(range(15, 20)) + list(range(26, T)))  # gone, then back
    ev = detect_deaths(df, dye_spots=spots, **kw)
    assert ev[["track_id", "frame", "mode"]].values.tolist() == [[1, 15, "necroptotic"]]


def test_two_ruptures_on_one_dye_spot_are_one_death():
    """Two tracks 11 µm apart (the pieces of test_one_death_called_on_two_pieces_of_a_cell_
    is_one_call, but each tracked from the movie's start: a swollen cell cut in two early, or
    one merged with a neighbour) rupture in the same frame with the dye at once. One spot
    of dye between them: one nucleus died, one death, on the first of the two. A spot on
    each: two deaths."""
    rep = np.r_[np.full(18, 600.0), np.full(T - 18, 150.0)]
    dye = np.r_[np.full(18, 100.0), np.full(T - 18, 900.0)]
    df = _measured(
        _track(5, np.full(T, 120.0), rep, dye),
        _track(6, np.full(T, 150.0), rep, dye, x=50 + 11 / 0.65),
    )
    kw = dict(interval_s=60, pixel_size_um=0.65, image_shape=(200, 200))
    one = _spots(T, range(18, T), x=50 + 5.5 / 0.65)
    ev = detect_deaths(df, dye_spots=one, **kw)
    assert ev[["track_id", "frame"]].values.tolist() == [[5, 18]]
    shift = np.array([0.0, 11 / 0.65, 0.0, 0.0, 0.0])
    two = [np.r_[s, s + shift] for s in _spots(T, range(18, T))]
    ev = detect_deaths(df, dye_spots=two, **kw)
    assert sorted(ev["track_id"].tolist()) == [5, 6] and set(ev["frame"]) == {18}


def test_the_reporter_s_crosstalk_is_what_most_cells_show_in_the_dye():
    """The median dye / reporter over cells with reporter: a dying cell's own dye does
    not move it; fewer than 10 cells, or below 0.02, is no crosstalk."""
    from deathtrack.death import reporter_crosstalk

    rep = np.full(20, 1000.0)
    dye = 0.1 * rep
    dye[:3] = 5000.0  # three dead cells
    assert reporter_crosstalk(rep, dye) == pytest.approx(0.1)
    assert reporter_crosstalk(rep[:9], dye[:9]) == 0.0
    assert reporter_crosstalk(rep, 0.01 * rep) == 0.0
    assert reporter_crosstalk(np.r_[rep, np.zeros(30)], np.r_[dye, np.ones(30)]) == pytest.approx(
        0.1
    )


@pytest.mark.parametrize("w", [1, 2, 3, 6])
def test_rupture_candidates_are_exactly_the_indices_passing_the_first_test(w):
    """The screen over every index at once keeps exactly the indices that the test of one
    index passes first (NaN, zero and negative levels included), so the deaths found with
    it are those found testing every index."""
    from deathtrack.death import _rupture_candidates

    cfg = DeathConfig()
    rng = np.random.default_rng(w)
    for _ in range(300):
        n = int(rng.integers(0, 40))
        tot = rng.choice([1.0, 0.9, 0.5, 0.3, 0.1, 0.0, -0.2], n) * rng.uniform(0.8, 1.2, n)
        tot[rng.random(n) < 0.05] = np.nan
        expected = []
        for i in range(1, n):
            pre = float(np.max(tot[max(0, i - w) : i]))
            post = tot[i : min(i + max(w, 2), n)]
            if pre > 0 and np.max(post) <= (1 - cfg.rupture_drop) * pre:
                expected.append(i)
        assert _rupture_candidates(tot, w, cfg).tolist() == expected, (tot, w)
