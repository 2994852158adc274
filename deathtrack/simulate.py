"""Synthetic time-lapse movies of dying cells whose truth is known.

The simulator is the ground truth every accuracy test and benchmark of
deathtrack is scored against. It models, per target cell, a fate (stay
alive, die by apoptosis, die by necroptosis, divide) with the morphology and
reporter kinetics of ``DESIGN.md``; immune cells in their own channel with
persistent random motility and mode-dependent recruitment to dying cells;
debris; and an imaging model with what real microscopes vary: optical blur
(PSF width in µm), background with a gradient, vignetting and a faint
large-scale texture, photobleaching per channel, crosstalk between channels,
stage drift (random walk, slow systematic drift, occasional jumps), shot
noise, camera gain, offset and read noise, and a signal-to-noise ratio that
can be given directly.

Every kinetic parameter is in minutes (or per minute) and every length in
µm, so one biology can be filmed at any pixel size (0.25-1.3 µm) and frame
interval (30 s - 10 min). Durations drawn for a cell are whole frames of the
movie's interval (at least one frame where a change must be seen); the
defaults are the first simulator's frame counts at 2 min per frame, and at
``interval_s = 120`` they give the same movies.

Truth definitions (the same ones the pipeline reports), in frames of the
movie's own interval:

``onset_frame``
    first frame of the morphological change (shrinking or swelling begins).
``frame``
    the death frame. Apoptosis: the first frame at or after onset whose
    (rendered) area is at least 15 % below the cell's pre-onset baseline
    (median area over the frames before onset). Necroptosis: the rupture
    frame, the first frame by which at least half of the reporter's drop
    (from its last pre-rupture level to the ghost level) has happened.
``dye_frame``
    the first frame with the dead-cell dye at >= 50 % of its plateau; NaN
    when there is no dye channel or the dye does not reach it in the movie.

Truth labels are each cell's true pixels in the rendered frame: stage drift
moves them (positions in the truth tables are where the cell is seen), and
nothing of the imaging model (blur, bleaching, crosstalk, illumination,
noise) changes them. Debris is drawn in the images but is not a cell: it is
label 0.

Families of conditions and seeds
--------------------------------
:func:`random_config` draws a whole movie's conditions from a named family
of :data:`FAMILIES`: every condition is randomised within mild ranges and
one axis is pushed to its extreme (uneven light, drift and crosstalk, dense
clumps, fine pixels and fast frames, coarse pixels and slow frames, low SNR,
macrophages and debris, divisions without deaths, no dye).
:func:`family_table` lists the ranges. Seeds 0-99 of every family are
*development seeds* (:data:`DEV_SEEDS`): look at them while tuning. Seeds
from :data:`SCORING_SEED_START` (1000) on are *scoring seeds*: never look at
them while tuning; benchmark results are reported on them.

Examples
--------
>>> from deathtrack.simulate import SimulationConfig, simulate
>>> sim = simulate(SimulationConfig(shape_yx=(96, 96), n_frames=4, n_cells=2, n_immune=1))
>>> sim.render_frame(0).shape  # (C, Y, X): cells, immune, dye
(3, 96, 96)
>>> from deathtrack.simulate import random_config
>>> cfg = random_config("low_snr", seed=3)
>>> 3 <= cfg.snr <= 6
True
"""

from __future__ import annotations

import json
import logging
import math
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from . import columns as col
from .config import Section, config_to_dict

logger = logging.getLogger(__name__)

__all__ = [
    "DEV_SEEDS",
    "FAMILIES",
    "PRESETS",
    "SCORING_SEED_START",
    "Family",
    "Simulation",
    "SimulationConfig",
    "draw_conditions",
    "family_table",
    "movie_uuid",
    "preset",
    "random_config",
    "simulate",
    "write_simulation",
]

# cell states in the truth table
ALIVE = "alive"
DYING = "dying"
DEAD = "dead"
MITOTIC = "mitotic"
# cell fates
FATE_ALIVE = "alive"
FATE_DIVIDE = "divides"

CELL_ID = "cell_id"
IMMUNE_ID = "immune_id"
STATE = "state"
FATE = "fate"

#: channel roles the simulator can draw, in channel order
SIM_ROLES = (col.ROLE_CELLS, col.ROLE_IMMUNE, col.ROLE_DYE, col.ROLE_CASPASE)

#: seeds a developer may look at while tuning (per family)
DEV_SEEDS = range(0, 100)
#: seeds from here on are for scoring only: never looked at while tuning
SCORING_SEED_START = 1000

# The first simulator's per-frame values at 2 min per frame, to the last digit: the
# defaults below are these, so that default movies (and the bundled demo) stay the same.
_LEGACY_DT_MIN = 2.0
_LEGACY_PERSISTENCE = 0.7  # direction kept per frame; turn SD = 1.5 * sqrt(1 - p) rad
_DEFAULT_PERSISTENCE_MIN = 2 * _LEGACY_DT_MIN / (1.5**2 * (1 - _LEGACY_PERSISTENCE))
_DEFAULT_RECRUIT_NEC = -math.log(1 - 0.35) / _LEGACY_DT_MIN
_DEFAULT_RECRUIT_APO = -math.log(1 - 0.06) / _LEGACY_DT_MIN
_DEFAULT_BLEACH = 1 - math.sqrt(1 - 0.004)  # per minute: 0.4 % per 2-min frame
_DEFAULT_DRIFT_WALK = 0.1 / math.sqrt(_LEGACY_DT_MIN)  # 0.1 µm per axis per 2-min frame


def _crosstalk_key(key: str) -> tuple[str, str]:
    src, sep, dst = key.partition("_to_")
    if not sep or src not in SIM_ROLES or dst not in SIM_ROLES or src == dst:
        raise ValueError(
            f"crosstalk key {key!r} must be SOURCE_to_TARGET with two different roles of "
            f"{', '.join(SIM_ROLES)}, e.g. 'cells_to_dye'"
        )
    return src, dst


class SimulationConfig(Section):
    """Parameters of a simulated movie. The same config and seed give the same movie.

    Lengths are in µm, times in minutes (rates per minute), photon levels in
    photons per pixel; only the image size and the number of frames are in
    pixels and frames.
    """

    seed: int = Field(0, ge=0, description="Random seed; everything is derived from it.")
    shape_yx: tuple[int, int] = Field((256, 256), description="Image size (Y, X) in pixels.")
    n_frames: int = Field(60, ge=1, description="Number of frames.")
    pixel_size_um: float = Field(0.65, gt=0, description="Pixel size in µm.")
    interval_s: float = Field(120.0, gt=0, description="Frame interval in seconds.")

    # target cells
    n_cells: int = Field(16, ge=0, description="Number of target cells at the start.")
    cell_radius_um: float = Field(9.0, gt=0, description="Mean target-cell radius in µm.")
    cell_radius_sd_um: float = Field(1.0, ge=0, description="SD of the cell radius in µm.")
    min_gap_um: float = Field(
        5.0,
        description="Smallest gap between cell outlines at placement, µm; 0 or less makes "
        "touching cells (negative: outlines overlap and the cells share a flat border).",
    )
    clumping: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Fraction of cells placed against an already placed cell (clumps); "
        "0 places every cell at random.",
    )
    cell_speed_um_per_min: float = Field(0.15, ge=0, description="Target-cell random speed.")
    p_apoptotic: float = Field(0.25, ge=0, le=1, description="Fraction dying by apoptosis.")
    p_necroptotic: float = Field(0.25, ge=0, le=1, description="Fraction dying by necroptosis.")
    p_divide: float = Field(0.1, ge=0, le=1, description="Fraction dividing (a confounder).")
    first_onset_min: float = Field(
        8.0, ge=0, description="Earliest onset of a death or mitosis (min; at least frame 1)."
    )
    post_death_min: float = Field(
        36.0, ge=0, description="Latest onset leaves at least this long after death (min)."
    )

    # apoptosis
    apoptotic_area_fraction: tuple[float, float] = Field(
        (0.5, 0.7), description="Final area relative to baseline (range) after shrinking."
    )
    apoptotic_shrink_min: tuple[float, float] = Field(
        (8.0, 14.0), description="Minutes over which an apoptotic cell shrinks (range)."
    )
    fragment_delay_min: tuple[float, float] = Field(
        (6.0, 14.0), description="Minutes from the end of shrinking to fragmentation (range)."
    )
    n_fragments: tuple[int, int] = Field((3, 6), description="Apoptotic bodies (range).")
    apoptotic_dye_lag_min: tuple[float, float] = Field(
        (24.0, 60.0), description="Minutes from death to half-maximal dye (secondary necrosis)."
    )

    # necroptosis
    necroptotic_area_fraction: tuple[float, float] = Field(
        (1.3, 1.9), description="Peak area relative to baseline (range) before rupture."
    )
    necroptotic_swell_min: tuple[float, float] = Field(
        (10.0, 20.0), description="Minutes of swelling and rounding before rupture (range)."
    )
    ghost_level: float = Field(
        0.15, ge=0, le=1, description="Reporter left in the ruptured ghost (of baseline)."
    )

    # mitosis
    mitosis_round_min: float = Field(
        6.0, gt=0, description="Minutes a dividing cell is rounded up before it splits."
    )

    # immune cells
    n_immune: int = Field(15, ge=0, description="Number of immune cells.")
    immune_radius_um: float = Field(
        4.0, gt=0, description="Immune-cell radius in µm (T/NK cells ~3-5, macrophages 6-10)."
    )
    immune_speed_um_per_min: float = Field(3.0, ge=0, description="Immune-cell speed.")
    immune_persistence_min: float = Field(
        _DEFAULT_PERSISTENCE_MIN,
        gt=0,
        description="Persistence time of the immune cells' direction (min): the correlation "
        "of the heading decays as exp(-t / persistence). Default ~5.9 min.",
    )
    recruit_necroptotic_per_min: float = Field(
        _DEFAULT_RECRUIT_NEC,
        ge=0,
        description="Rate (per min) at which an immune cell within the sensing radius starts "
        "moving to a necroptotic death. Default ~0.215 (35 % per 2 min).",
    )
    recruit_apoptotic_per_min: float = Field(
        _DEFAULT_RECRUIT_APO,
        ge=0,
        description="Same as recruit_necroptotic_per_min, for apoptotic deaths (default ~0.031).",
    )
    sensing_radius_um: float = Field(90.0, gt=0, description="Range of the death signal.")
    dwell_necroptotic_min: tuple[float, float] = Field(
        (30.0, 80.0), description="Minutes a recruited immune cell stays at a necroptotic death."
    )
    dwell_apoptotic_min: tuple[float, float] = Field(
        (6.0, 16.0), description="Minutes a recruited immune cell stays at an apoptotic death."
    )

    # debris
    n_debris: int = Field(
        0, ge=0, description="Small bright particles that are not cells (truth label 0)."
    )
    debris_diameter_um: tuple[float, float] = Field(
        (1.0, 3.0), description="Debris diameter range, µm."
    )
    debris_brightness: tuple[float, float] = Field(
        (0.8, 2.5), description="Debris brightness range, relative to the cells' reporter."
    )
    debris_dye_fraction: float = Field(
        0.3, ge=0, le=1, description="Fraction of the debris also bright in the dye channel."
    )
    debris_moving_fraction: float = Field(
        0.3, ge=0, le=1, description="Fraction of the debris that drifts slowly (the rest stays)."
    )
    debris_speed_um_per_min: float = Field(
        0.3, ge=0, description="Random-walk speed of the moving debris."
    )

    # channels
    with_immune: bool = Field(True, description="Add an immune-cell channel.")
    with_dye: bool = Field(True, description="Add a dead-cell dye channel.")
    with_caspase: bool = Field(False, description="Add a caspase-3/7 reporter channel.")

    # imaging: signal
    snr: float | None = Field(
        None,
        gt=0,
        description="Signal-to-noise ratio of the cells channel: mean reporter signal of a "
        "live cell (ideal image, field centre, frame 0) over the SD of the background noise "
        "(shot + read noise). When set, it fixes cell_brightness; the immune, dye and debris "
        "brightness keep their ratio to it.",
    )
    cell_brightness: float = Field(600.0, gt=0, description="Reporter photons per pixel.")
    immune_brightness: float = Field(500.0, gt=0, description="Immune photons per pixel.")
    dye_brightness: float = Field(900.0, gt=0, description="Dye plateau photons per pixel.")
    texture: float = Field(0.25, ge=0, lt=1, description="Cytoplasm texture (relative).")
    psf_sigma_um: float = Field(
        0.78, ge=0, description="Gaussian PSF sigma in µm (blur scales with the pixel size)."
    )
    crosstalk: dict[str, float] = Field(
        default_factory=dict,
        description="Bleed-through between channels: {'SOURCE_to_TARGET': fraction}, e.g. "
        "{cells_to_dye = 0.1, immune_to_cells = 0.05}; roles: " + ", ".join(SIM_ROLES) + ".",
    )
    bleach_per_min: float = Field(
        _DEFAULT_BLEACH,
        ge=0,
        lt=1,
        description="Photobleaching: fraction of the signal lost per minute, every channel "
        "(default ~0.002: 0.4 % per 2 min).",
    )
    bleach_by_channel_per_min: dict[str, float] = Field(
        default_factory=dict,
        description="Per-channel photobleaching per minute, {role: fraction}; overrides "
        "bleach_per_min for the roles given.",
    )

    # imaging: background and illumination
    background: float = Field(80.0, ge=0, description="Background photons per pixel.")
    background_gradient: float = Field(
        0.3, ge=0, description="Relative background slope across the field."
    )
    gradient_angle_deg: float | None = Field(
        None,
        description="Direction of the background and illumination gradients (degrees from "
        "+x towards +y); None: the first simulator's (full slope in x, half in y).",
    )
    illumination_gradient: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Relative slope of the excitation across the field (signal and "
        "background), in the gradient's direction.",
    )
    vignetting: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Radial fall-off of excitation and background: fraction lost at the "
        "image corners (quadratic in the distance from the optical centre).",
    )
    vignetting_center: tuple[float, float] = Field(
        (0.5, 0.5), description="Optical centre (y, x) as fractions of the image size."
    )
    background_texture: float = Field(
        0.0, ge=0, lt=1, description="Faint large-scale background texture (relative SD)."
    )
    background_texture_um: float = Field(
        80.0, gt=0, description="Scale of the background texture (µm)."
    )

    # imaging: camera
    read_noise: float = Field(4.0, ge=0, description="Gaussian read noise SD (counts).")
    camera_offset: int = Field(100, ge=0, description="Camera offset (counts).")
    camera_gain: float = Field(1.0, gt=0, description="Camera gain (counts per photon).")

    # imaging: stage drift
    drift_walk_um: float = Field(
        _DEFAULT_DRIFT_WALK,
        ge=0,
        description="Random-walk stage drift: SD per axis of the displacement over one "
        "minute (µm; over an interval dt it is this × sqrt(dt / 1 min)). Default ~0.071.",
    )
    drift_velocity_um_per_min: tuple[float, float] = Field(
        (0.0, 0.0), description="Slow systematic stage drift (y, x), µm per minute."
    )
    drift_jumps_per_hour: float = Field(
        0.0, ge=0, description="Rate of sudden stage jumps (e.g. refocusing, a bumped table)."
    )
    drift_jump_um: float = Field(3.0, ge=0, description="Typical stage jump length (µm).")

    # truth recruitment table
    truth_radius_um: float = Field(30.0, gt=0, description="Radius R for n_within_r.")
    truth_contact_um: float = Field(1.0, ge=0, description="Contact tolerance (mask dilation).")
    truth_pre_frames: int = Field(10, ge=0, description="Frames before death in the table.")
    truth_post_frames: int = Field(20, ge=0, description="Frames after death in the table.")

    @model_validator(mode="after")
    def _check(self) -> SimulationConfig:
        if self.p_apoptotic + self.p_necroptotic + self.p_divide > 1 + 1e-9:
            raise ValueError(
                "p_apoptotic + p_necroptotic + p_divide must be <= 1, got "
                f"{self.p_apoptotic + self.p_necroptotic + self.p_divide:g}"
            )
        if min(self.shape_yx) < 16:
            raise ValueError(f"shape_yx must be at least 16 x 16 pixels, got {self.shape_yx}")
        for name in (
            "apoptotic_area_fraction",
            "apoptotic_shrink_min",
            "fragment_delay_min",
            "n_fragments",
            "apoptotic_dye_lag_min",
            "necroptotic_area_fraction",
            "necroptotic_swell_min",
            "dwell_necroptotic_min",
            "dwell_apoptotic_min",
            "debris_diameter_um",
            "debris_brightness",
        ):
            lo, hi = getattr(self, name)
            if lo > hi or lo <= 0:
                raise ValueError(f"{name} must be a range (low, high) with 0 < low <= high")
        if self.apoptotic_area_fraction[1] > 0.8:
            raise ValueError("apoptotic_area_fraction must stay <= 0.8 (shrinking is a death)")
        if self.necroptotic_area_fraction[0] < 1.0:
            raise ValueError("necroptotic_area_fraction must be >= 1 (necroptotic cells swell)")
        for key, value in self.crosstalk.items():
            _crosstalk_key(key)
            if not 0 <= value < 1:
                raise ValueError(f"crosstalk[{key!r}] must be in [0, 1), got {value}")
        for role, value in self.bleach_by_channel_per_min.items():
            if role not in SIM_ROLES:
                raise ValueError(
                    f"bleach_by_channel_per_min: unknown role {role!r}; roles: "
                    + ", ".join(SIM_ROLES)
                )
            if not 0 <= value < 1:
                raise ValueError(f"bleach_by_channel_per_min[{role!r}] must be in [0, 1)")
        return self

    @property
    def channel_names(self) -> list[str]:
        names = [col.ROLE_CELLS]
        if self.with_immune:
            names.append(col.ROLE_IMMUNE)
        if self.with_dye:
            names.append(col.ROLE_DYE)
        if self.with_caspase:
            names.append(col.ROLE_CASPASE)
        return names

    @property
    def interval_min(self) -> float:
        """Frame interval in minutes."""
        return self.interval_s / 60.0

    @property
    def duration_min(self) -> float:
        """Time from the first to the last frame, minutes."""
        return (self.n_frames - 1) * self.interval_min

    def frames(self, minutes: float, *, minimum: int = 0) -> int:
        """Whole frames of this movie's interval nearest to ``minutes`` (at least ``minimum``)."""
        return max(minimum, int(round(minutes / self.interval_min)))

    def photon_scale(self) -> float:
        """Factor from the configured brightness to photons: 1 unless :attr:`snr` is set."""
        if self.snr is None:
            return 1.0
        noise_counts = math.sqrt(self.camera_gain**2 * self.background + self.read_noise**2)
        photons = self.snr * noise_counts / (self.camera_gain * _LIVE_CELL_MEAN_LEVEL)
        return photons / self.cell_brightness

    def bleach_rate(self, role: str) -> float:
        """Fraction of ``role``'s signal lost per minute."""
        return self.bleach_by_channel_per_min.get(role, self.bleach_per_min)


#: Mean reporter level inside a live cell relative to ``cell_brightness``: the cell is
#: thinner towards its edge and its nucleus is 15 % dimmer (see ``ideal_frame``).
_LIVE_CELL_MEAN_LEVEL = 0.819


#: Named scenarios used by tests and benchmarks: overrides of the defaults.
PRESETS: dict[str, dict] = {
    "default": {},
    "dense": {
        "n_cells": 55,
        "min_gap_um": -1.5,
        "cell_radius_sd_um": 0.8,
        "p_apoptotic": 0.15,
        "p_necroptotic": 0.15,
    },
    "low_snr": {
        "cell_brightness": 60.0,
        "immune_brightness": 50.0,
        "dye_brightness": 90.0,
        "read_noise": 6.0,
    },
    "divisions": {"p_apoptotic": 0.0, "p_necroptotic": 0.0, "p_divide": 0.4},
    "no_deaths": {"p_apoptotic": 0.0, "p_necroptotic": 0.0, "p_divide": 0.0},
    "no_dye": {"with_dye": False},
    "caspase": {"with_caspase": True},
    "ignore": {"recruit_necroptotic_per_min": 0.0, "recruit_apoptotic_per_min": 0.0},
    "large": {"shape_yx": (1024, 1024), "n_frames": 120, "n_cells": 240, "n_immune": 240},
    "demo": {
        "shape_yx": (224, 224),
        "n_frames": 40,
        "n_cells": 13,
        "n_immune": 11,
        "p_apoptotic": 0.3,
        "p_necroptotic": 0.3,
        "p_divide": 0.12,
    },
}


def preset(name: str, **overrides) -> SimulationConfig:
    """Config of a named scenario (see :data:`PRESETS`) with extra overrides."""
    if name not in PRESETS:
        from .errors import ConfigError

        raise ConfigError(f"unknown simulation preset {name!r}; choose one of {', '.join(PRESETS)}")
    return SimulationConfig(**{**PRESETS[name], **overrides})


# ---------------------------------------------------------------------------
# dynamics


def _smoothstep(x: np.ndarray | float) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@dataclass
class _Cell:
    """One target-cell track: per-frame geometry and reporter levels (index = frame)."""

    cell_id: int
    fate: str
    start: int  # first frame it exists
    stop: int  # last frame + 1
    radius_um: float
    harm_amp: np.ndarray  # (K,)
    harm_k: np.ndarray  # (K,)
    tex_offset: tuple[int, int]
    center: np.ndarray = field(default=None)  # (T, 2) µm, NaN where absent
    phase: np.ndarray = field(default=None)  # (T, K)
    area_factor: np.ndarray = field(default=None)  # (T,)
    roundness: np.ndarray = field(default=None)  # (T,) multiplies harmonics
    reporter: np.ndarray = field(default=None)  # (T,) relative brightness
    dye: np.ndarray = field(default=None)  # (T,) 0..1 of plateau
    caspase: np.ndarray = field(default=None)  # (T,) 0..1
    bleb: np.ndarray = field(default=None)  # (T,) 0..1
    state: np.ndarray = field(default=None)  # (T,) object array of states
    onset: int = -1
    fragment_frame: int = -1
    rupture: int = -1
    drop_frac: float = 1.0
    dye_half: float = math.nan
    division_frame: int = -1
    parent_id: int = 0
    fragments: np.ndarray | None = None  # (n, 3): dy, dx (unit of radius), radius factor
    moving: np.ndarray = field(default=None)  # (T,) bool: whether it moves this frame
    split_axis: tuple[float, float] = (0.0, 0.0)  # daughters: unit vector away from the sister


@dataclass
class Simulation:
    """A simulated movie: dynamics are computed; frames are rendered on demand.

    Use :meth:`render_frame` for images (C, Y, X), :meth:`render_labels` for the
    truth label images, :meth:`truth` for the truth tables and
    :func:`write_simulation` to save everything.
    """

    config: SimulationConfig
    cells: list[_Cell]
    immune_pos: np.ndarray  # (T, M, 2) µm
    immune_angle: np.ndarray  # (T, M)
    immune_target: np.ndarray  # (T, M) event cell_id or 0
    immune_arrested: np.ndarray  # (T, M) bool
    immune_shape: np.ndarray  # (M, 4): a, b (µm), harmonic amp, harmonic phase
    drift: np.ndarray  # (T, 2) µm
    texture_map: np.ndarray  # (S, S) float, mean 1
    background_map: np.ndarray  # (Y, X) relative background (gradient, texture, illumination)
    illumination: np.ndarray | None = None  # (Y, X) relative excitation; None: even
    debris_pos: np.ndarray | None = None  # (T, D, 2) µm, before drift
    debris_props: np.ndarray | None = None  # (D, 3): radius µm, reporter level, dye level
    _truth: dict[str, pd.DataFrame] | None = None
    _label_store: tuple[np.ndarray, np.ndarray] | None = None  # (T, Y, X) cells, immune

    @property
    def shape(self) -> tuple[int, ...]:
        c = self.config
        return (c.n_frames, len(c.channel_names), *c.shape_yx)

    # -- rendering ---------------------------------------------------------

    def _cell_pieces(self, cell: _Cell, t: int) -> list[tuple]:
        """Shapes making up ``cell`` at frame ``t``: ('star'|'disc', cy, cx, params) in px."""
        c = self.config
        px = c.pixel_size_um
        cy, cx = (cell.center[t] + self.drift[t]) / px
        r = cell.radius_um * math.sqrt(cell.area_factor[t]) / px
        pieces: list[tuple] = []
        if cell.fragment_frame >= 0 and t >= cell.fragment_frame:
            age_min = (t - cell.fragment_frame) * c.interval_min
            spread = 1.0 + 0.6 * _smoothstep(age_min / 12.0)  # bodies part over ~12 min
            for dy, dx, rf in cell.fragments:
                pieces.append(("disc", cy + dy * r * spread, cx + dx * r * spread, rf * r))
            return pieces
        amps = cell.harm_amp * cell.roundness[t]
        pieces.append(("star", cy, cx, (r, amps, cell.harm_k, cell.phase[t])))
        if cell.bleb[t] > 0:
            rng = np.random.default_rng([c.seed, 7, cell.cell_id, t])
            n = int(round(3 + 6 * cell.bleb[t]))
            angles = rng.uniform(0, 2 * np.pi, n)
            for a in angles:
                rb = r * rng.uniform(0.14, 0.22) * (0.5 + 0.5 * cell.bleb[t])
                rr = _star_radius(np.array([a]), r, amps, cell.harm_k, cell.phase[t])[0]
                pieces.append(
                    ("disc", cy + 0.95 * rr * math.sin(a), cx + 0.95 * rr * math.cos(a), rb)
                )
        return pieces

    def _immune_pieces(self, m: int, t: int) -> tuple:
        c = self.config
        px = c.pixel_size_um
        cy, cx = (self.immune_pos[t, m] + self.drift[t]) / px
        a, b, amp, ph = self.immune_shape[m]
        return cy, cx, a / px, b / px, self.immune_angle[t, m], amp, ph + 0.3 * t

    def render_labels(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Truth label images at frame ``t``: cells (value = cell_id) and immune (immune_id).

        Returns
        -------
        cells, immune : ndarray of int32, shape (Y, X)
            Apoptotic bodies carry the label of the cell they came from; debris is 0.
        """
        if self._label_store is not None:
            return np.asarray(self._label_store[0][t]), np.asarray(self._label_store[1][t])
        cells, _, _ = self._render_cells(t)
        immune, _ = self._render_immune(t)
        return cells, immune

    def _render_cells(self, t: int) -> tuple[np.ndarray, dict, np.ndarray]:
        """Owner label of each pixel, the cells drawn, and each pixel's relative radius."""
        c = self.config
        ny, nx = c.shape_yx
        owner = np.zeros((ny, nx), np.int32)
        best = np.full((ny, nx), np.inf, np.float32)
        drawn: dict[int, _Cell] = {}
        for cell in self.cells:
            if not (cell.start <= t < cell.stop):
                continue
            for kind, cy, cx, p in self._cell_pieces(cell, t):
                if kind == "star":
                    r, amps, ks, ph = p
                    reach = r * (1 + np.abs(amps).sum()) + 1
                else:
                    reach = p + 1
                y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, ny)
                x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, nx)
                if y0 >= y1 or x0 >= x1:
                    continue
                yy, xx = np.mgrid[y0:y1, x0:x1]
                dy, dx = yy - cy, xx - cx
                dist = np.hypot(dy, dx)
                if kind == "star":
                    rad = _star_radius(np.arctan2(dy, dx), r, amps, ks, ph)
                else:
                    rad = p
                rho = (dist / np.maximum(rad, 1e-6)).astype(np.float32)
                sub_best = best[y0:y1, x0:x1]
                win = (rho < 1) & (rho < sub_best)
                sub_best[win] = rho[win]
                owner[y0:y1, x0:x1][win] = cell.cell_id
                drawn[cell.cell_id] = cell
        return owner, drawn, best

    def _render_immune(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        ny, nx = c.shape_yx
        owner = np.zeros((ny, nx), np.int32)
        best = np.full((ny, nx), np.inf, np.float32)
        for m in range(self.immune_pos.shape[1]):
            cy, cx, a, b, ang, amp, ph = self._immune_pieces(m, t)
            reach = max(a, b) * (1 + amp) + 1
            y0, y1 = max(int(cy - reach), 0), min(int(cy + reach) + 2, ny)
            x0, x1 = max(int(cx - reach), 0), min(int(cx + reach) + 2, nx)
            if y0 >= y1 or x0 >= x1:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1]
            dy, dx = yy - cy, xx - cx
            th = np.arctan2(dy, dx) - ang
            rad = a * b / np.hypot(b * np.cos(th), a * np.sin(th))
            rad = rad * (1 + amp * np.cos(3 * th + ph))
            rho = (np.hypot(dy, dx) / rad).astype(np.float32)
            sub_best = best[y0:y1, x0:x1]
            win = (rho < 1) & (rho < sub_best)
            sub_best[win] = rho[win]
            owner[y0:y1, x0:x1][win] = m + 1
        return owner, best

    def _draw_debris(self, img: np.ndarray, t: int, ci: dict[str, int]) -> None:
        """Add the debris (small bright discs, not cells) to the ideal image in place."""
        c = self.config
        if self.debris_pos is None or not len(self.debris_props):
            return
        ny, nx = c.shape_yx
        px = c.pixel_size_um
        pos = (self.debris_pos[t] + self.drift[t]) / px
        for (cy, cx), (rad_um, level, dye_level) in zip(pos, self.debris_props):
            r = max(rad_um / px, 0.5)
            y0, y1 = max(int(cy - r - 1), 0), min(int(cy + r) + 2, ny)
            x0, x1 = max(int(cx - r - 1), 0), min(int(cx + r) + 2, nx)
            if y0 >= y1 or x0 >= x1:
                continue
            yy, xx = np.mgrid[y0:y1, x0:x1]
            # a disc with a one-pixel soft edge, so a sub-pixel particle still shows
            cover = np.clip(r + 0.5 - np.hypot(yy - cy, xx - cx), 0.0, 1.0).astype(np.float32)
            img[0][y0:y1, x0:x1] += c.cell_brightness * level * cover
            if dye_level > 0 and col.ROLE_DYE in ci:
                img[ci[col.ROLE_DYE]][y0:y1, x0:x1] += c.dye_brightness * dye_level * cover

    def ideal_frame(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Noise-free photon images (C, Y, X) at frame ``t`` and the truth labels.

        Each channel holds only its own fluorophore (no blur, bleaching, crosstalk or
        uneven illumination: :meth:`render_frame` adds those).
        """
        c = self.config
        ny, nx = c.shape_yx
        px = c.pixel_size_um
        names = c.channel_names
        img = np.zeros((len(names), ny, nx), np.float32)
        cells_lab, drawn, rho_cells = self._render_cells(t)
        immune_lab, rho_immune = self._render_immune(t)
        # cells are thinner at their edge, so touching cells show a dim seam between them
        thick_cells = 0.5 + 0.5 * _smoothstep((1 - rho_cells) / 0.35)
        thick_immune = 0.5 + 0.5 * _smoothstep((1 - rho_immune) / 0.35)
        tex = self.texture_map
        ts = tex.shape[0]
        ci = {n: i for i, n in enumerate(names)}
        if drawn:
            objs = _bboxes(cells_lab)
            for cid, sl in objs.items():
                cell = drawn[cid]
                mask = cells_lab[sl] == cid
                yy, xx = np.mgrid[sl]
                cy, cx = (cell.center[t] + self.drift[t]) / px
                oy, ox = cell.tex_offset
                ty = (yy - np.round(cy).astype(int) + oy) % ts
                tx = (xx - np.round(cx).astype(int) + ox) % ts
                level = c.cell_brightness * cell.reporter[t] * tex[ty, tx] * thick_cells[sl]
                r = cell.radius_um * math.sqrt(cell.area_factor[t]) / px
                fragmented = cell.fragment_frame >= 0 and t >= cell.fragment_frame
                nucleus = np.hypot(yy - cy, xx - cx) < 0.4 * r
                if not fragmented and cell.state[t] != DEAD:
                    level = np.where(nucleus, level * 0.85, level)
                img[0][sl][mask] = level[mask]
                if c.with_dye and cell.dye[t] > 0:
                    region = mask if fragmented or cell.fate == col.APOPTOTIC else mask & nucleus
                    img[ci[col.ROLE_DYE]][sl][region] = c.dye_brightness * cell.dye[t]
                if c.with_caspase and cell.caspase[t] > 0:
                    img[ci[col.ROLE_CASPASE]][sl][mask] = c.cell_brightness * cell.caspase[t]
        if c.with_immune and self.immune_pos.shape[1]:
            objs = _bboxes(immune_lab)
            for lab, sl in objs.items():
                mask = immune_lab[sl] == lab
                yy, xx = np.mgrid[sl]
                ty = (yy * 3 + 17 * lab) % ts
                tx = (xx * 3 + 29 * lab) % ts
                level = c.immune_brightness * (0.6 + 0.4 * tex[ty, tx]) * thick_immune[sl]
                img[ci[col.ROLE_IMMUNE]][sl][mask] = level[mask]
        self._draw_debris(img, t, ci)
        scale = c.photon_scale()
        if scale != 1.0:
            img *= np.float32(scale)
        return img, cells_lab, immune_lab

    def render_frame(self, t: int) -> np.ndarray:
        """Simulated camera image at frame ``t``, shape (C, Y, X), uint16.

        Order of the imaging model: PSF blur, photobleaching of each
        fluorophore, crosstalk between channels (the bleed-through fades with
        its source), uneven excitation (illumination gradient, vignetting),
        background (with its gradient, texture and the same illumination), shot
        noise, camera gain, read noise and offset.
        """
        from scipy import ndimage as ndi

        c = self.config
        if not 0 <= t < c.n_frames:
            raise IndexError(f"frame {t} is outside the movie (0..{c.n_frames - 1})")
        ideal, _, _ = self.ideal_frame(t)
        names = c.channel_names
        rng = np.random.default_rng([c.seed, 2, t])
        sigma_px = c.psf_sigma_um / c.pixel_size_um
        blurred = [ndi.gaussian_filter(sig, sigma_px) if sigma_px > 0 else sig for sig in ideal]
        # bleaching belongs to the fluorophore, so light bleeding into another channel
        # fades with its source; Python floats keep the products float32
        bleach = [float((1 - c.bleach_rate(n)) ** (t * c.interval_min)) for n in names]
        out = np.empty(ideal.shape, np.uint16)
        for k in range(ideal.shape[0]):
            photons = blurred[k] * bleach[k]
            for key, frac in c.crosstalk.items():
                src, dst = _crosstalk_key(key)
                if dst == names[k] and src in names and frac > 0:
                    j = names.index(src)
                    photons = photons + blurred[j] * float(frac * bleach[j])
            if self.illumination is not None:
                photons = photons * self.illumination
            photons = photons + c.background * self.background_map
            counts = rng.poisson(np.maximum(photons, 0)).astype(np.float32)
            if c.camera_gain != 1.0:
                counts *= np.float32(c.camera_gain)
            if c.read_noise > 0:
                counts += rng.normal(0, c.read_noise, counts.shape).astype(np.float32)
            out[k] = np.clip(np.round(counts + c.camera_offset), 0, 65535).astype(np.uint16)
        return out

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Yield rendered frames (C, Y, X) one at a time."""
        for t in range(self.config.n_frames):
            yield self.render_frame(t)

    # -- truth -------------------------------------------------------------

    def truth(self, *, progress: bool = False) -> dict[str, pd.DataFrame]:
        """Truth tables, computed once from the rendered label images.

        Returns
        -------
        dict of DataFrame
            ``events`` (one row per death: event_id, cell_id, mode, onset_frame,
            frame, dye_frame, t_s, y, x, y_um, x_um, baseline_area_um2),
            ``cells`` (frame, cell_id, y, x, y_um, x_um, area_um2, state, fate,
            parent_id), ``immune`` (frame, immune_id, y, x, y_um, x_um,
            target_cell_id, arrested), ``lineage`` (parent_id, child_id, frame)
            and ``recruitment`` (event_id, dt, t_rel_s, n_within_r, n_contact).
            Positions are label centroids in pixels (y, x) and µm (y_um, x_um),
            where the cells are seen (stage drift included).
        """
        if self._truth is None:
            self._truth = self._compute_truth(progress=progress)
        return self._truth

    def _compute_truth(self, *, progress: bool) -> dict[str, pd.DataFrame]:
        from tqdm.auto import tqdm

        c = self.config
        px = c.pixel_size_um
        T = c.n_frames
        by_id = {cell.cell_id: cell for cell in self.cells}
        cell_rows, immune_rows = [], []
        areas: dict[int, dict[int, float]] = {cid: {} for cid in by_id}
        immune_xy: list[tuple[np.ndarray, np.ndarray]] = []
        for t in tqdm(range(T), desc="truth", disable=not progress, unit="frame"):
            cells_lab, immune_lab = self.render_labels(t)
            for cid, y, x, n in _centroids(cells_lab):
                cell = by_id[cid]
                areas[cid][t] = n * px * px
                cell_rows.append(
                    (t, cid, y, x, n * px * px, cell.state[t], cell.fate, cell.parent_id)
                )
            rows = _centroids(immune_lab)
            for mid, y, x, _ in rows:
                m = mid - 1
                immune_rows.append(
                    (t, mid, y, x, int(self.immune_target[t, m]), bool(self.immune_arrested[t, m]))
                )
            immune_xy.append(
                (
                    np.array([r[0] for r in rows], int),
                    np.array([r[1:3] for r in rows]).reshape(-1, 2),
                )
            )
        cells_df = pd.DataFrame(
            cell_rows,
            columns=[col.FRAME, CELL_ID, col.Y, col.X, col.AREA_UM2, STATE, FATE, col.PARENT_ID],
        )
        cells_df.insert(4, col.Y_UM, cells_df[col.Y] * px)
        cells_df.insert(5, col.X_UM, cells_df[col.X] * px)

        # events: apoptotic death frame from the rendered areas, necroptotic from the reporter
        event_rows = []
        for cell in self.cells:
            if cell.fate not in (col.APOPTOTIC, col.NECROPTOTIC):
                continue
            a = areas[cell.cell_id]
            pre = [a[t] for t in range(max(cell.start, cell.onset - 5), cell.onset) if t in a]
            baseline = float(np.median(pre)) if pre else math.nan
            if cell.fate == col.APOPTOTIC:
                frame = next(
                    (t for t in range(cell.onset, T) if a.get(t, 0.0) <= 0.85 * baseline), -1
                )
            else:
                frame = cell.rupture if cell.drop_frac >= 0.5 else cell.rupture + 1
            if not 0 <= frame < T or frame not in a:
                continue
            row = cells_df[
                (cells_df[CELL_ID] == cell.cell_id) & (cells_df[col.FRAME] == frame)
            ].iloc[0]
            hit = np.flatnonzero(cell.dye >= 0.5) if c.with_dye else np.array([])
            dye_frame = float(hit[0]) if hit.size else math.nan
            event_rows.append(
                (
                    cell.cell_id,
                    cell.fate,
                    cell.onset,
                    frame,
                    dye_frame,
                    row[col.Y],
                    row[col.X],
                    baseline,
                )
            )
        events = pd.DataFrame(
            event_rows,
            columns=[
                CELL_ID,
                col.MODE,
                col.ONSET_FRAME,
                col.FRAME,
                col.DYE_FRAME,
                col.Y,
                col.X,
                "baseline_area_um2",
            ],
        )
        events = events.sort_values([col.FRAME, CELL_ID], kind="stable").reset_index(drop=True)
        events.insert(0, col.EVENT_ID, np.arange(1, len(events) + 1))
        events.insert(6, col.T_S, events[col.FRAME] * c.interval_s)
        events.insert(9, col.Y_UM, events[col.Y] * px)
        events.insert(10, col.X_UM, events[col.X] * px)
        events[col.DYE_FRAME] = events[col.DYE_FRAME].astype(float)
        events[col.ONSET_FRAME] = events[col.ONSET_FRAME].astype(int)
        events[col.FRAME] = events[col.FRAME].astype(int)

        # states follow the truth death frame: alive < onset <= dying < frame <= dead
        for ev in events.itertuples(index=False):
            rows = cells_df[CELL_ID] == ev.cell_id
            f = cells_df[col.FRAME]
            cells_df.loc[rows & (f >= ev.onset_frame), STATE] = DYING
            cells_df.loc[rows & (f >= ev.frame), STATE] = DEAD

        immune_df = pd.DataFrame(
            immune_rows, columns=[col.FRAME, IMMUNE_ID, col.Y, col.X, "target_cell_id", "arrested"]
        )
        immune_df.insert(4, col.Y_UM, immune_df[col.Y] * px)
        immune_df.insert(5, col.X_UM, immune_df[col.X] * px)

        lineage = pd.DataFrame(
            [(cell.parent_id, cell.cell_id, cell.start) for cell in self.cells if cell.parent_id],
            columns=[col.PARENT_ID, col.CHILD_ID, col.FRAME],
        )
        recruitment = self._truth_recruitment(events, immune_xy)
        return {
            "events": events,
            "cells": cells_df,
            "immune": immune_df,
            "lineage": lineage,
            "recruitment": recruitment,
        }

    def _truth_recruitment(self, events: pd.DataFrame, immune_xy) -> pd.DataFrame:
        """Immune cells within R of each event (by centroid) and touching its mask, per frame."""
        from scipy import ndimage as ndi

        c = self.config
        px = c.pixel_size_um
        T = c.n_frames
        rad_px = c.truth_radius_um / px
        tol = int(math.ceil(c.truth_contact_um / px))
        windows: dict[int, list] = {}
        for ev in events.itertuples(index=False):
            for dt in range(-c.truth_pre_frames, c.truth_post_frames + 1):
                if 0 <= ev.frame + dt < T:
                    windows.setdefault(ev.frame + dt, []).append((ev, dt))
        rows = []
        struct = ndi.generate_binary_structure(2, 1)
        for t in sorted(windows):
            cells_lab, immune_lab = self.render_labels(t)
            _, pos = immune_xy[t]
            for ev, dt in windows[t]:
                n_within = int(np.sum(np.hypot(pos[:, 0] - ev.y, pos[:, 1] - ev.x) <= rad_px))
                mask = cells_lab == ev.cell_id
                if tol:
                    mask = ndi.binary_dilation(mask, struct, iterations=tol)
                n_contact = int(np.count_nonzero(np.unique(immune_lab[mask])))
                rows.append((ev.event_id, dt, dt * c.interval_s, n_within, n_contact))
        rec = pd.DataFrame(
            rows, columns=[col.EVENT_ID, col.DT, col.T_REL_S, col.N_WITHIN_R, col.N_CONTACT]
        )
        return rec.sort_values([col.EVENT_ID, col.DT], kind="stable").reset_index(drop=True)


def _centroids(labels: np.ndarray) -> list[tuple[int, float, float, int]]:
    """(label, y, x, n_pixels) of every label in ``labels``, sorted by label."""
    from scipy import ndimage as ndi

    ids = np.unique(labels)
    ids = ids[ids > 0]
    if not ids.size:
        return []
    ones = np.ones(labels.shape, np.float64)
    com = ndi.center_of_mass(ones, labels, ids)
    cnt = ndi.sum_labels(ones, labels, ids)
    return [(int(i), float(y), float(x), int(n)) for i, (y, x), n in zip(ids, com, cnt)]


def _bboxes(labels: np.ndarray) -> dict[int, tuple[slice, slice]]:
    from scipy import ndimage as ndi

    out = {}
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is not None:
            out[i] = sl
    return out


def _star_radius(
    theta: np.ndarray, r: float, amps: np.ndarray, ks: np.ndarray, phases: np.ndarray
) -> np.ndarray:
    """Radius of a star-convex outline with low-order harmonics at angles ``theta``."""
    rad = np.ones_like(theta, dtype=float)
    for a, k, p in zip(amps, ks, phases):
        rad = rad + a * np.cos(k * theta + p)
    return r * np.maximum(rad, 0.3)


def _texture(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    from scipy import ndimage as ndi

    noise = ndi.gaussian_filter(rng.normal(size=(size, size)), sigma, mode="wrap")
    noise /= noise.std() + 1e-12
    return noise


def _smooth_field(
    rng: np.random.Generator, shape_yx: tuple[int, int], scale_px: float
) -> np.ndarray:
    """Smooth random field (Y, X) of mean 0 and SD 1 whose features are ~``scale_px`` wide.

    Drawn on a coarse grid (4 nodes per feature) and interpolated, so a scale of
    hundreds of pixels costs no more than a small one.
    """
    from scipy import ndimage as ndi

    ny, nx = shape_yx
    step = max(scale_px / 4.0, 1.0)
    pad = 12
    gy, gx = int(math.ceil(ny / step)) + 2 * pad, int(math.ceil(nx / step)) + 2 * pad
    coarse = ndi.gaussian_filter(rng.normal(size=(gy, gx)), 4.0, mode="wrap")
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    fine = ndi.map_coordinates(coarse, [yy / step + pad, xx / step + pad], order=3)
    return (fine - fine.mean()) / (fine.std() + 1e-12)


def _illumination_maps(
    cfg: SimulationConfig, rng_extra: np.random.Generator
) -> tuple[np.ndarray, np.ndarray | None]:
    """Relative background (Y, X) and relative excitation (Y, X, or None when even)."""
    ny, nx = cfg.shape_yx
    yy, xx = np.mgrid[0:ny, 0:nx]
    g = cfg.background_gradient
    if cfg.gradient_angle_deg is None:
        bg = 1 + g * ((xx / max(nx - 1, 1)) - 0.5) + 0.5 * g * ((yy / max(ny - 1, 1)) - 0.5)
        u = (xx / max(nx - 1, 1)) - 0.5
    else:
        a = math.radians(cfg.gradient_angle_deg)
        proj = (xx - (nx - 1) / 2) * math.cos(a) + (yy - (ny - 1) / 2) * math.sin(a)
        u = proj / (2 * max(np.abs(proj).max(), 1e-9))  # -0.5 .. 0.5 across the field
        bg = 1 + g * u
    bg = bg.astype(np.float32)
    illum = None
    if cfg.illumination_gradient > 0:
        illum = (1 + cfg.illumination_gradient * u).astype(np.float32)
    if cfg.vignetting > 0:
        cy, cx = cfg.vignetting_center[0] * (ny - 1), cfg.vignetting_center[1] * (nx - 1)
        r2 = (yy - cy) ** 2 + (xx - cx) ** 2
        corners = [(0, 0), (0, nx - 1), (ny - 1, 0), (ny - 1, nx - 1)]
        rc2 = max((y - cy) ** 2 + (x - cx) ** 2 for y, x in corners)
        vig = (1 - cfg.vignetting * r2 / max(rc2, 1e-9)).astype(np.float32)
        illum = vig if illum is None else illum * vig
    if cfg.background_texture > 0:
        scale_px = cfg.background_texture_um / cfg.pixel_size_um
        tex = 1 + cfg.background_texture * _smooth_field(rng_extra, (ny, nx), scale_px)
        bg = bg * tex.astype(np.float32)
    if illum is not None:
        bg = bg * illum  # the background's autofluorescence is excited by the same light
    return np.clip(bg, 0.02, None).astype(np.float32), illum


def _stage_drift(
    cfg: SimulationConfig, rng: np.random.Generator, rng_extra: np.random.Generator
) -> np.ndarray:
    """Stage drift (T, 2) in µm: random walk + slow systematic drift + sudden jumps."""
    T = cfg.n_frames
    drift = np.cumsum(
        rng.normal(0, cfg.drift_walk_um * math.sqrt(cfg.interval_min), (T, 2)), axis=0
    )
    drift -= drift[0]
    vy, vx = cfg.drift_velocity_um_per_min
    if vy or vx:
        t_min = np.arange(T) * cfg.interval_min
        drift = drift + t_min[:, None] * np.array([vy, vx])
    if cfg.drift_jumps_per_hour > 0 and T > 1:
        n = int(rng_extra.poisson(cfg.drift_jumps_per_hour * cfg.duration_min / 60.0))
        # a stage that creeps also jumps roughly the way it creeps (within 90 degrees)
        creep = math.atan2(vy, vx) if (vy or vx) else None
        for _ in range(n):
            t0 = int(rng_extra.integers(1, T))
            if creep is None:
                ang = rng_extra.uniform(0, 2 * np.pi)
            else:
                ang = creep + rng_extra.uniform(-np.pi / 2, np.pi / 2)
            length = cfg.drift_jump_um * rng_extra.uniform(0.5, 1.5)
            drift[t0:] += length * np.array([math.sin(ang), math.cos(ang)])
    return drift


def _debris(
    cfg: SimulationConfig, rng_extra: np.random.Generator, H: float, W: float
) -> tuple[np.ndarray, np.ndarray]:
    """Debris positions (T, D, 2) in µm and properties (D, 3): radius µm, level, dye level."""
    T, D = cfg.n_frames, cfg.n_debris
    if not D:
        return np.zeros((T, 0, 2)), np.zeros((0, 3))
    start = rng_extra.uniform([0, 0], [H, W], (D, 2))
    radius = rng_extra.uniform(*cfg.debris_diameter_um, D) / 2
    level = rng_extra.uniform(*cfg.debris_brightness, D)
    in_dye = rng_extra.uniform(size=D) < cfg.debris_dye_fraction
    dye_level = np.where(in_dye, rng_extra.uniform(0.3, 1.0, D), 0.0)
    moving = rng_extra.uniform(size=D) < cfg.debris_moving_fraction
    step_sd = cfg.debris_speed_um_per_min * cfg.interval_min / math.sqrt(2)
    steps = rng_extra.normal(0, step_sd, (T, D, 2)) * moving[None, :, None]
    steps[0] = 0
    pos = start[None] + np.cumsum(steps, axis=0)
    return pos, np.column_stack([radius, level, dye_level])


def _place_cells(
    cfg: SimulationConfig, rng: np.random.Generator, rng_extra: np.random.Generator, H, W
) -> tuple[list[np.ndarray], list[float]]:
    """Random sequential placement; with ``clumping``, cells are put against placed ones."""
    radii = np.clip(
        rng.normal(cfg.cell_radius_um, cfg.cell_radius_sd_um, cfg.n_cells),
        0.5 * cfg.cell_radius_um,
        1.5 * cfg.cell_radius_um,
    )
    centers = np.zeros((0, 2))
    kept_r = np.zeros(0)
    for r in radii:
        r = float(r)
        lo, hi = [0.3 * r, 0.3 * r], [H - 0.3 * r, W - 0.3 * r]
        placed = False
        if cfg.clumping > 0 and len(centers) and rng_extra.uniform() < cfg.clumping:
            for _ in range(60):  # against a random placed cell, at the allowed gap
                j = int(rng_extra.integers(len(centers)))
                ang = rng_extra.uniform(0, 2 * np.pi)
                d = r + kept_r[j] + cfg.min_gap_um + rng_extra.uniform(0, 0.15 * r)
                p = centers[j] + d * np.array([math.sin(ang), math.cos(ang)])
                if not (lo[0] <= p[0] <= hi[0] and lo[1] <= p[1] <= hi[1]):
                    continue
                if np.all(np.hypot(*(p - centers).T) >= r + kept_r + cfg.min_gap_um - 1e-9):
                    placed = True
                    break
        if not placed:
            for _ in range(400):
                p = rng.uniform(lo, hi)
                if not len(centers) or np.all(
                    np.hypot(*(p - centers).T) >= r + kept_r + cfg.min_gap_um
                ):
                    placed = True
                    break
        if placed:
            centers = np.vstack([centers, p])
            kept_r = np.append(kept_r, r)
    if len(centers) < cfg.n_cells:
        logger.warning("placed %d of %d cells: the field is too crowded", len(centers), cfg.n_cells)
    return list(centers), [float(r) for r in kept_r]


def simulate(config: SimulationConfig | None = None, **overrides) -> Simulation:
    """Simulate the dynamics of a movie (frames are rendered on demand).

    Parameters
    ----------
    config
        Simulation parameters; defaults to :class:`SimulationConfig()`.
    **overrides
        Field overrides applied on top of ``config``.

    Returns
    -------
    Simulation
        Render frames with :meth:`Simulation.render_frame`, get the truth with
        :meth:`Simulation.truth`, save with :func:`write_simulation`.
    """
    cfg = config or SimulationConfig()
    if overrides:
        cfg = SimulationConfig(**{**cfg.model_dump(), **overrides})
    rng = np.random.default_rng([cfg.seed, 1])
    # everything the first simulator did not draw comes from its own stream, so that
    # switching a new effect on does not change the rest of the movie
    rng_extra = np.random.default_rng([cfg.seed, 11])
    T = cfg.n_frames
    dt = cfg.interval_min
    px = cfg.pixel_size_um
    ny, nx = cfg.shape_yx
    H, W = ny * px, nx * px
    step_sd = cfg.cell_speed_um_per_min * cfg.interval_s / 60.0 / math.sqrt(2)
    phase_sd = 0.06 * math.sqrt(dt / 2.0)  # outline wobble: 0.06 rad per 2 min

    centers, kept_r = _place_cells(cfg, rng, rng_extra, H, W)

    # --- fates ---
    n = len(centers)
    u = rng.uniform(size=n)
    fates = np.where(
        u < cfg.p_apoptotic,
        col.APOPTOTIC,
        np.where(
            u < cfg.p_apoptotic + cfg.p_necroptotic,
            col.NECROPTOTIC,
            np.where(
                u < cfg.p_apoptotic + cfg.p_necroptotic + cfg.p_divide, FATE_DIVIDE, FATE_ALIVE
            ),
        ),
    )
    K = 4
    cells: list[_Cell] = []
    tex_size = 512
    for i, (p, r) in enumerate(zip(centers, kept_r)):
        ks = np.arange(2, 2 + K)
        amps = rng.uniform(0.02, 0.09, K) / np.sqrt(ks - 1)
        cell = _Cell(
            cell_id=i + 1,
            fate=str(fates[i]),
            start=0,
            stop=T,
            radius_um=r,
            harm_amp=amps,
            harm_k=ks,
            tex_offset=tuple(rng.integers(0, tex_size, 2)),
        )
        cell.phase = np.cumsum(
            np.vstack([rng.uniform(0, 2 * np.pi, K), rng.normal(0, phase_sd, (T - 1, K))]), axis=0
        )
        cell.area_factor = np.ones(T)
        cell.roundness = np.ones(T)
        cell.reporter = np.ones(T)
        cell.dye = np.zeros(T)
        cell.caspase = np.zeros(T)
        cell.bleb = np.zeros(T)
        cell.state = np.array([ALIVE] * T, dtype=object)
        cell.moving = np.ones(T, bool)
        cell.center = np.full((T, 2), np.nan)
        cell.center[0] = p
        _schedule_fate(cell, cfg, rng)
        cells.append(cell)

    # --- daughters of dividing cells ---
    next_id = len(cells) + 1
    daughters: list[_Cell] = []
    for cell in cells:
        if cell.fate != FATE_DIVIDE:
            continue
        d = cell.division_frame
        axis = rng.uniform(0, np.pi)
        for sign in (-1, 1):
            ks = cell.harm_k
            child = _Cell(
                cell_id=next_id,
                fate=FATE_ALIVE,
                start=d,
                stop=T,
                radius_um=cell.radius_um * math.sqrt(0.5) * 1.0,
                harm_amp=cell.harm_amp * 0.8,
                harm_k=ks,
                tex_offset=tuple(rng.integers(0, tex_size, 2)),
                parent_id=cell.cell_id,
            )
            next_id += 1
            child.phase = np.cumsum(
                np.vstack(
                    [
                        rng.uniform(0, 2 * np.pi, len(ks)),
                        rng.normal(0, phase_sd, (T - 1, len(ks))),
                    ]
                ),
                axis=0,
            )
            age_min = (np.arange(T) - d) * dt
            child.area_factor = 1.0 + 0.6 * _smoothstep(age_min / 24.0)  # daughters regrow
            child.roundness = np.clip(0.2 + 0.8 * age_min / 12.0, 0.2, 1.0)
            child.reporter = 1.0 + 0.25 * np.clip(1 - age_min / 8.0, 0, 1)
            child.dye = np.zeros(T)
            child.caspase = np.zeros(T)
            child.bleb = np.zeros(T)
            child.state = np.array([ALIVE] * T, dtype=object)
            child.moving = np.ones(T, bool)
            child.center = np.full((T, 2), np.nan)
            child.split_axis = (sign * math.sin(axis), sign * math.cos(axis))
            daughters.append(child)
    all_cells = cells + daughters
    _move_cells(cfg, rng, all_cells, step_sd, H, W)

    # --- immune cells ---
    M = cfg.n_immune if cfg.with_immune else 0
    immune_pos = np.zeros((T, M, 2))
    immune_angle = np.zeros((T, M))
    immune_target = np.zeros((T, M), np.int64)
    immune_arrested = np.zeros((T, M), bool)
    immune_shape = (
        np.column_stack(
            [
                cfg.immune_radius_um * rng.uniform(1.1, 1.4, M),
                cfg.immune_radius_um * rng.uniform(0.7, 0.9, M),
                rng.uniform(0.05, 0.15, M),
                rng.uniform(0, 2 * np.pi, M),
            ]
        )
        if M
        else np.zeros((0, 4))
    )
    if M:
        _move_immune(
            cfg, rng, all_cells, immune_pos, immune_angle, immune_target, immune_arrested, H, W
        )

    drift = _stage_drift(cfg, rng, rng_extra)
    texture_map = np.clip(1 + cfg.texture * _texture(rng, tex_size, 3.0), 0.2, None).astype(
        np.float32
    )
    background_map, illumination = _illumination_maps(cfg, rng_extra)
    debris_pos, debris_props = _debris(cfg, rng_extra, H, W)
    return Simulation(
        config=cfg,
        cells=all_cells,
        immune_pos=immune_pos,
        immune_angle=immune_angle,
        immune_target=immune_target,
        immune_arrested=immune_arrested,
        immune_shape=immune_shape,
        drift=drift,
        texture_map=texture_map,
        background_map=background_map,
        illumination=illumination,
        debris_pos=debris_pos,
        debris_props=debris_props,
    )


def _move_cells(
    cfg: SimulationConfig, rng: np.random.Generator, cells: list[_Cell], step_sd, H, W
) -> None:
    """Random walk of the target cells with soft exclusion (fills ``center`` in place)."""
    T = cfg.n_frames
    dt = cfg.interval_min
    N = len(cells)
    if not N:
        return
    by_id = {cell.cell_id: cell for cell in cells}
    C = np.full((N, T, 2), np.nan)
    for i, cell in enumerate(cells):
        C[i, 0] = cell.center[0]
        cell.center = C[i]  # a view: the cells see the positions as they are filled
    start = np.array([c.start for c in cells])
    stop = np.array([c.stop for c in cells])
    parent = np.array([c.parent_id for c in cells])
    radius = np.array([c.radius_um for c in cells])
    area = np.stack([c.area_factor for c in cells])  # (N, T)
    thr = min(cfg.min_gap_um, 0.0) - 0.5
    for t in range(1, T):
        active = (start <= t) & (t < stop)
        ro_all = radius * np.sqrt(area[:, t])
        for i, cell in enumerate(cells):
            if not active[i]:
                continue
            if t == cell.start and cell.parent_id:
                par = by_id[cell.parent_id]
                sy, sx = cell.split_axis
                off = 0.72 * par.radius_um  # daughters touch at a narrow neck
                C[i, t] = par.center[t - 1] + off * np.array([sy, sx])
                continue
            prev = C[i, t - 1]
            if not cell.moving[t]:
                C[i, t] = prev
                continue
            step = rng.normal(0, step_sd, 2)
            if cell.parent_id and (t - cell.start) * dt < 8.0:  # daughters move apart ~8 min
                sy, sx = cell.split_axis
                step = step + (0.06 * dt) * cell.radius_um * np.array([sy, sx])
            prop = prev + step
            r = cell.radius_um * math.sqrt(cell.area_factor[t])
            prop = np.clip(prop, 0.3 * r, [H - 0.3 * r, W - 0.3 * r])
            others = active.copy()
            others[i] = False
            if cell.parent_id:
                others &= parent != cell.parent_id
            q = np.where(np.isnan(C[:, t, :1]), C[:, t - 1], C[:, t])
            others &= ~np.isnan(q[:, 0])
            ok = True
            if others.any():
                qo, ro = q[others], ro_all[others]
                gap = np.hypot(prop[0] - qo[:, 0], prop[1] - qo[:, 1]) - r - ro
                gap_prev = np.hypot(prev[0] - qo[:, 0], prev[1] - qo[:, 1]) - r - ro
                ok = not np.any((gap < thr) & (gap < gap_prev))
            C[i, t] = prop if ok else prev


def _draw_frames(
    rng: np.random.Generator, cfg: SimulationConfig, range_min: tuple[float, float], minimum=1
) -> int:
    """A duration drawn uniformly from ``range_min`` (minutes), in whole frames."""
    lo = cfg.frames(range_min[0], minimum=minimum)
    hi = max(cfg.frames(range_min[1], minimum=minimum), lo)
    return int(rng.integers(lo, hi + 1))


def _schedule_fate(cell: _Cell, cfg: SimulationConfig, rng: np.random.Generator) -> None:
    """Fill the per-frame arrays of ``cell`` according to its fate."""
    T = cfg.n_frames
    dt = cfg.interval_min
    t = np.arange(T)
    first = cfg.frames(cfg.first_onset_min, minimum=1)
    post = cfg.frames(cfg.post_death_min)
    if cell.fate == col.APOPTOTIC:
        shrink = _draw_frames(rng, cfg, cfg.apoptotic_shrink_min)
        delay = _draw_frames(rng, cfg, cfg.fragment_delay_min)
        latest = T - 1 - shrink - post
        if latest < first:
            cell.fate = FATE_ALIVE
            return
        o = int(rng.integers(first, latest + 1))
        final = rng.uniform(*cfg.apoptotic_area_fraction)
        prog = _smoothstep((t - o + 1) / shrink)
        cell.onset = o
        cell.area_factor = 1 - (1 - final) * prog
        cell.reporter = cell.area_factor**-0.6  # the reporter concentrates
        cell.bleb = np.where(t >= o + 1, prog, 0.0)
        cell.fragment_frame = o + shrink + delay
        nf = int(rng.integers(cfg.n_fragments[0], cfg.n_fragments[1] + 1))
        ang = np.sort(rng.uniform(0, 2 * np.pi, nf))
        dist = rng.uniform(0.35, 0.75, nf)
        cell.fragments = np.column_stack(
            [dist * np.sin(ang), dist * np.cos(ang), rng.uniform(0.28, 0.42, nf)]
        )
        frag = t >= cell.fragment_frame
        cell.bleb[frag] = 0
        # the bodies lose reporter slowly: 1.5 % per 2 min
        age = np.maximum(t - cell.fragment_frame, 0) * (dt / 2.0)
        cell.reporter = np.where(frag, final**-0.6 * 0.985**age, cell.reporter)
        cell.state = np.where(t < o, ALIVE, np.where(cell.area_factor > 0.85, DYING, DEAD)).astype(
            object
        )
        cell.moving = t < o
        lag = _draw_frames(rng, cfg, cfg.apoptotic_dye_lag_min)
        width = rng.uniform(4.0 / dt, 8.0 / dt)  # the dye rises over ~4-8 min
        death_guess = o + shrink // 2
        cell.dye_half = death_guess + lag
        cell.dye = np.where(t >= death_guess, 1 / (1 + np.exp(-(t - cell.dye_half) / width)), 0.0)
        cell.dye = np.where(cell.dye < 0.02, 0.0, cell.dye)
        cas_on = o - _draw_frames(rng, cfg, (4.0, 8.0), minimum=0)  # caspase 4-8 min ahead
        cell.caspase = np.clip((t - cas_on + 1) / (4.0 / dt), 0, 1)  # on within 4 min
    elif cell.fate == col.NECROPTOTIC:
        swell = _draw_frames(rng, cfg, cfg.necroptotic_swell_min)
        latest = T - 1 - swell - 1 - post
        if latest < first:
            cell.fate = FATE_ALIVE
            return
        o = int(rng.integers(first, latest + 1))
        peak = rng.uniform(*cfg.necroptotic_area_fraction)
        prog = _smoothstep((t - o + 1) / swell)
        rupture = o + swell + _draw_frames(rng, cfg, (0.0, 2.0), minimum=0)  # 0-2 min later
        drop = float(rng.uniform(0.35, 1.0))
        cell.onset = o
        cell.rupture = rupture
        cell.drop_frac = drop
        cell.area_factor = 1 + (peak - 1) * prog
        cell.roundness = 1 - 0.85 * prog
        rep = 1 / cell.area_factor  # the reporter dilutes as the cell swells
        pre = rep[rupture - 1]
        g = cfg.ghost_level
        rep = np.where(t == rupture, pre - drop * (pre - g), rep)
        rep = np.where(t > rupture, g * 0.99 ** ((t - rupture - 1) * (dt / 2.0)), rep)
        cell.reporter = rep
        cell.state = np.where(t < o, ALIVE, np.where(t < rupture, DYING, DEAD)).astype(object)
        cell.moving = t < o
        cell.dye = np.where(t == rupture, drop, np.where(t > rupture, 1.0, 0.0))
    elif cell.fate == FATE_DIVIDE:
        rf = cfg.frames(cfg.mitosis_round_min, minimum=1)
        latest = T - cfg.frames(8.0, minimum=2)  # daughters seen for at least ~8 min
        if latest < first + rf:
            cell.fate = FATE_ALIVE
            return
        d = int(rng.integers(first + rf, latest + 1))
        cell.division_frame = d
        cell.onset = d - rf
        cell.stop = d
        rounding = np.clip((t - (d - rf) + 1) / rf, 0, 1)
        cell.roundness = 1 - 0.9 * rounding
        cell.area_factor = 1 - 0.12 * rounding
        cell.reporter = 1 + 0.3 * rounding  # brightens briefly
        cell.state = np.where(t >= d - rf, MITOTIC, ALIVE).astype(object)
        cell.moving = t < d - rf


def _move_immune(cfg, rng, cells, pos, angle, target, arrested, H, W) -> None:
    """Persistent random walk with recruitment to deaths (stronger to necroptotic)."""
    T, M = angle.shape
    dt = cfg.interval_min
    px_margin = cfg.immune_radius_um
    speed = cfg.immune_speed_um_per_min * cfg.interval_s / 60.0
    # heading diffusion: correlation exp(-t / persistence) for turns of variance 2 dt / persistence
    turn_sd = math.sqrt(2 * dt / cfg.immune_persistence_min)
    p_recruit = {
        col.NECROPTOTIC: 1 - math.exp(-cfg.recruit_necroptotic_per_min * dt),
        col.APOPTOTIC: 1 - math.exp(-cfg.recruit_apoptotic_per_min * dt),
    }
    pos[0] = rng.uniform([px_margin, px_margin], [H - px_margin, W - px_margin], (M, 2))
    heading = rng.uniform(0, 2 * np.pi, M)
    angle[0] = heading
    dwell_left = np.zeros(M, int)
    visited: list[set[int]] = [set() for _ in range(M)]
    deaths = [c for c in cells if c.fate in (col.APOPTOTIC, col.NECROPTOTIC)]
    by_id = {c.cell_id: c for c in deaths}
    apo_signal = cfg.frames(4.0)  # apoptotic find-me signals start ~4 min after onset

    def death_frame(c: _Cell) -> int:
        if c.fate == col.NECROPTOTIC:
            return c.rupture
        return c.onset + apo_signal

    for t in range(1, T):
        for m in range(M):
            p = pos[t - 1, m]
            tgt = target[t - 1, m]
            if tgt and dwell_left[m] <= 0 and arrested[t - 1, m]:
                visited[m].add(tgt)
                tgt = 0
            cur = by_id.get(tgt)
            if not tgt or cur.fate == col.APOPTOTIC:
                # nearest signalling death first; a necroptotic signal can pull a cell away
                # from an apoptotic one (DAMPs outcompete find-me signals)
                cands = [
                    (np.hypot(*(c.center[t - 1] - p)), c)
                    for c in deaths
                    if c.cell_id not in visited[m]
                    and c.cell_id != tgt
                    and t >= death_frame(c)
                    and (not tgt or c.fate == col.NECROPTOTIC)
                ]
                for d, c in sorted(cands, key=lambda dc: dc[0]):
                    if d < cfg.sensing_radius_um and rng.uniform() < p_recruit[c.fate]:
                        tgt = c.cell_id
                        dwell = (
                            cfg.dwell_necroptotic_min
                            if c.fate == col.NECROPTOTIC
                            else cfg.dwell_apoptotic_min
                        )
                        dwell_left[m] = _draw_frames(rng, cfg, dwell)
                        break
            turn = rng.normal(0, turn_sd)
            heading[m] = heading[m] + turn
            step_len = speed * rng.uniform(0.6, 1.4)
            is_arrested = False
            if tgt:
                c = by_id[tgt]
                vec = c.center[t - 1] - p
                d = np.hypot(*vec)
                arrive = c.radius_um * math.sqrt(c.area_factor[t - 1]) + cfg.immune_radius_um * 0.8
                if d <= arrive + 1.0:
                    is_arrested = True
                    dwell_left[m] -= 1
                    step_len = 0.1 * speed * rng.uniform(0, 1)
                else:
                    want = math.atan2(vec[1], vec[0])  # heading is atan2(dx, dy)
                    diff = (want - heading[m] + np.pi) % (2 * np.pi) - np.pi
                    heading[m] = heading[m] + 0.7 * diff
                    step_len = min(step_len, max(d - arrive, 0.0))
            step = step_len * np.array([math.cos(heading[m]), math.sin(heading[m])])
            new = p + step
            # reflect at the field's border
            for k, lim in ((0, H), (1, W)):
                if new[k] < 0:
                    new[k] = -new[k]
                    heading[m] = (
                        math.atan2(-math.sin(heading[m]), math.cos(heading[m]))
                        if k == 1
                        else math.pi - heading[m]
                    )
                elif new[k] > lim:
                    new[k] = 2 * lim - new[k]
                    heading[m] = (
                        math.atan2(-math.sin(heading[m]), math.cos(heading[m]))
                        if k == 1
                        else math.pi - heading[m]
                    )
            pos[t, m] = new
            angle[t, m] = (
                math.atan2(step[0], step[1]) if step_len > 0.05 * speed else angle[t - 1, m]
            )
            target[t, m] = tgt
            arrested[t, m] = is_arrested
        _repel(pos[t], 1.8 * cfg.immune_radius_um, H, W)


def _repel(p: np.ndarray, min_dist: float, H: float, W: float, iterations: int = 4) -> None:
    """Push apart immune cells closer than ``min_dist`` (cells crowd, they do not stack)."""
    for _ in range(iterations):
        d = p[:, None, :] - p[None, :, :]
        dist = np.hypot(d[..., 0], d[..., 1])
        np.fill_diagonal(dist, np.inf)
        close = dist < min_dist
        if not close.any():
            return
        overlap = np.where(close, (min_dist - dist) / 2, 0.0)
        unit = d / np.maximum(dist, 1e-6)[..., None]
        p += (unit * overlap[..., None]).sum(axis=1)
        np.clip(p, 0, [H, W], out=p)


def _legacy_frames(minutes: float, dt: float) -> int | None:
    f = minutes / dt
    return int(round(f)) if abs(f - round(f)) < 1e-9 else None


def _first_simulator_json(c: SimulationConfig) -> str | None:
    """The config as the first simulator (frame counts, per-frame rates) wrote it, if it can.

    A movie's OME UUID is derived from its parameters; a movie the first
    simulator could make keeps the UUID it gave it, so its files (the bundled
    demo among them) are remade byte for byte. None when the config uses
    anything the first simulator did not have.
    """
    fresh = SimulationConfig()
    new_only = (
        "clumping",
        "n_debris",
        "snr",
        "crosstalk",
        "bleach_by_channel_per_min",
        "gradient_angle_deg",
        "illumination_gradient",
        "vignetting",
        "background_texture",
        "camera_gain",
        "drift_velocity_um_per_min",
        "drift_jumps_per_hour",
    )
    if any(getattr(c, k) != getattr(fresh, k) for k in new_only):
        return None
    dt = c.interval_min
    frames: dict[str, object] = {}
    for old, new in (
        ("first_onset_frame", "first_onset_min"),
        ("post_death_frames", "post_death_min"),
        ("mitosis_round_frames", "mitosis_round_min"),
    ):
        frames[old] = _legacy_frames(getattr(c, new), dt)
    for old, new in (
        ("apoptotic_shrink_frames", "apoptotic_shrink_min"),
        ("fragment_delay_frames", "fragment_delay_min"),
        ("apoptotic_dye_lag_frames", "apoptotic_dye_lag_min"),
        ("necroptotic_swell_frames", "necroptotic_swell_min"),
        ("dwell_frames_necroptotic", "dwell_necroptotic_min"),
        ("dwell_frames_apoptotic", "dwell_apoptotic_min"),
    ):
        pair = [_legacy_frames(v, dt) for v in getattr(c, new)]
        frames[old] = None if None in pair else pair
    if any(v is None for v in frames.values()):
        return None

    def r12(x: float) -> float:
        return float(f"{x:.12g}")

    d = c.model_dump(mode="json")
    old = {k: d[k] for k in ("seed", "shape_yx", "n_frames", "pixel_size_um", "interval_s")}
    old.update({k: d[k] for k in ("n_cells", "cell_radius_um", "cell_radius_sd_um")})
    old.update({k: d[k] for k in ("min_gap_um", "cell_speed_um_per_min")})
    old.update({k: d[k] for k in ("p_apoptotic", "p_necroptotic", "p_divide")})
    old["first_onset_frame"] = frames["first_onset_frame"]
    old["post_death_frames"] = frames["post_death_frames"]
    old["apoptotic_area_fraction"] = d["apoptotic_area_fraction"]
    old["apoptotic_shrink_frames"] = frames["apoptotic_shrink_frames"]
    old["fragment_delay_frames"] = frames["fragment_delay_frames"]
    old["n_fragments"] = d["n_fragments"]
    old["apoptotic_dye_lag_frames"] = frames["apoptotic_dye_lag_frames"]
    old["necroptotic_area_fraction"] = d["necroptotic_area_fraction"]
    old["necroptotic_swell_frames"] = frames["necroptotic_swell_frames"]
    old["ghost_level"] = d["ghost_level"]
    old["mitosis_round_frames"] = frames["mitosis_round_frames"]
    old.update({k: d[k] for k in ("n_immune", "immune_radius_um", "immune_speed_um_per_min")})
    old["immune_persistence"] = r12(1 - 2 * dt / (c.immune_persistence_min * 1.5**2))
    old["recruit_necroptotic"] = r12(1 - math.exp(-c.recruit_necroptotic_per_min * dt))
    old["recruit_apoptotic"] = r12(1 - math.exp(-c.recruit_apoptotic_per_min * dt))
    old["sensing_radius_um"] = d["sensing_radius_um"]
    old["dwell_frames_necroptotic"] = frames["dwell_frames_necroptotic"]
    old["dwell_frames_apoptotic"] = frames["dwell_frames_apoptotic"]
    old.update({k: d[k] for k in ("with_immune", "with_dye", "with_caspase")})
    old.update({k: d[k] for k in ("cell_brightness", "immune_brightness", "dye_brightness")})
    old["texture"] = d["texture"]
    old["psf_sigma_px"] = r12(c.psf_sigma_um / c.pixel_size_um)
    old.update({k: d[k] for k in ("background", "background_gradient")})
    old["bleach_per_frame"] = r12(1 - (1 - c.bleach_per_min) ** dt)
    old.update({k: d[k] for k in ("read_noise", "camera_offset")})
    old["drift_um_per_frame"] = r12(c.drift_walk_um * math.sqrt(dt))
    for k in ("truth_radius_um", "truth_contact_um", "truth_pre_frames", "truth_post_frames"):
        old[k] = d[k]
    return json.dumps(old, separators=(",", ":"), ensure_ascii=False)


def movie_uuid(config: SimulationConfig) -> str:
    """The OME UUID of a simulated movie: derived from its parameters (same config, same file)."""
    import uuid as uuid_mod

    key = _first_simulator_json(config) or config.model_dump_json()
    return str(uuid_mod.uuid5(uuid_mod.NAMESPACE_URL, "deathtrack:" + key))


def write_simulation(
    sim: Simulation, out_dir: str | Path, *, name: str = "movie", progress: bool = False
) -> dict[str, Path]:
    """Write a simulated movie and its truth to ``out_dir``.

    Writes ``<name>.ome.tif`` (T, C, Y, X uint16 with calibration and channel
    names), and in ``<name>_truth/``: ``events.csv``, ``cells.csv``,
    ``immune.csv``, ``lineage.csv``, ``recruitment.csv``,
    ``labels_cells.tif``, ``labels_immune.tif`` and ``simulation.toml`` (the
    config that regenerates it with ``deathtrack simulate --config``).
    Frames are streamed: memory holds one frame, not the movie (the truth
    labels are rendered once into temporary memory-mapped files on disk).

    Returns
    -------
    dict of Path
        Paths of everything written, by key (``movie``, ``events``, ...).
    """
    import tempfile

    import tomli_w
    from tqdm.auto import tqdm

    from .io import write_labels, write_ome_tiff

    c = sim.config
    out = Path(out_dir)
    truth_dir = out / f"{name}_truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    T = c.n_frames
    ny, nx = c.shape_yx
    paths: dict[str, Path] = {}

    with tempfile.TemporaryDirectory(dir=truth_dir, prefix=".labels-") as tmp:
        stores = tuple(
            np.lib.format.open_memmap(
                Path(tmp) / f"{pop}.npy", mode="w+", dtype=np.int32, shape=(T, ny, nx)
            )
            for pop in ("cells", "immune")
        )
        for t in tqdm(range(T), desc="labels", disable=not progress, unit="frame"):
            stores[0][t], stores[1][t] = sim.render_labels(t)
        sim._label_store = stores
        try:
            for k, pop in enumerate(("cells", "immune")):
                paths[f"labels_{pop}"] = write_labels(
                    truth_dir / f"labels_{pop}.tif",
                    (stores[k][t] for t in range(T)),
                    shape=(T, ny, nx),
                    dtype=np.int32,
                )
            truth = sim.truth(progress=progress)
        finally:
            sim._label_store = None
            del stores
    for key, df in truth.items():
        p = truth_dir / f"{key}.csv"
        df.to_csv(p, index=False)
        paths[key] = p
    frames = tqdm(sim.iter_frames(), total=T, desc="movie", disable=not progress, unit="frame")
    paths["movie"] = write_ome_tiff(
        out / f"{name}.ome.tif",
        frames,
        shape=sim.shape,
        dtype=np.uint16,
        channel_names=c.channel_names,
        pixel_size_um=c.pixel_size_um,
        interval_s=c.interval_s,
        # the same parameters give the same file, byte for byte
        uuid=movie_uuid(c),
    )
    cfg_path = truth_dir / "simulation.toml"
    cfg_path.write_text(tomli_w.dumps(config_to_dict(c)), encoding="utf-8")
    paths["config"] = cfg_path
    return paths


# ---------------------------------------------------------------------------
# families of conditions

#: What is drawn for a randomised movie: quantity -> (kind, low, high, unit / meaning).
#: Kinds: "u" uniform, "log" log-uniform, "int" integer (inclusive), "const" (low).
_MILD: dict[str, tuple] = {
    # field of view and time
    "pixel_size_um": ("u", 0.45, 0.8, "µm"),
    "interval_s": ("u", 90.0, 240.0, "s"),
    "fov_y_um": ("u", 200.0, 350.0, "µm (at most 512 px)"),
    "fov_x_um": ("u", 200.0, 350.0, "µm (at most 512 px)"),
    "duration_h": ("u", 2.0, 4.0, "h (at most 150 frames)"),
    # target cells
    "cell_radius_um": ("u", 7.0, 11.0, "µm"),
    "cell_radius_cv": ("u", 0.06, 0.15, "SD / mean radius"),
    "coverage": ("u", 0.1, 0.3, "fraction of the field covered by cells"),
    "min_gap_rel": ("u", 0.1, 0.5, "gap between outlines at placement / radius"),
    "clumping": ("u", 0.0, 0.15, "fraction placed against another cell"),
    "cell_speed_um_per_min": ("u", 0.05, 0.3, "µm/min"),
    "p_death": ("u", 0.45, 0.6, "fraction of the cells that die"),
    "apoptotic_share": ("u", 0.35, 0.65, "of the deaths"),
    "p_divide": ("u", 0.05, 0.15, "fraction of the cells that divide"),
    "first_onset_min": ("u", 8.0, 20.0, "min"),
    "post_death_min": ("u", 30.0, 45.0, "min seen after each death (at least)"),
    "shrink_lo_min": ("u", 10.0, 20.0, "apoptotic shrinking, shortest, min"),
    "shrink_span_min": ("u", 5.0, 20.0, "apoptotic shrinking, longest - shortest, min"),
    "fragment_lo_min": ("u", 6.0, 15.0, "shrink end to fragments, shortest, min"),
    "fragment_span_min": ("u", 5.0, 20.0, "shrink end to fragments, span, min"),
    "dye_lag_lo_min": ("u", 30.0, 60.0, "apoptotic death to dye, shortest, min"),
    "dye_lag_span_min": ("u", 30.0, 90.0, "apoptotic death to dye, span, min"),
    "swell_lo_min": ("u", 15.0, 25.0, "necroptotic swelling, shortest, min"),
    "swell_span_min": ("u", 10.0, 35.0, "necroptotic swelling, span, min"),
    "mitosis_round_min": ("u", 20.0, 40.0, "min rounded before the split"),
    "ghost_level": ("u", 0.08, 0.25, "reporter left in a ruptured ghost"),
    # immune cells
    "immune_per_mm2": ("u", 200.0, 600.0, "immune cells per mm²"),
    "immune_radius_um": ("u", 3.0, 5.0, "µm (T/NK cells: 6-10 µm across)"),
    "immune_speed_um_per_min": ("u", 5.0, 15.0, "µm/min"),
    "immune_persistence_min": ("u", 2.0, 8.0, "min"),
    "recruit_necroptotic_per_min": ("u", 0.05, 0.2, "per min"),
    "recruit_apoptotic_per_min": ("u", 0.005, 0.03, "per min"),
    "sensing_radius_um": ("u", 50.0, 100.0, "µm"),
    "dwell_nec_lo_min": ("u", 20.0, 40.0, "stay at a necroptotic death, shortest, min"),
    "dwell_nec_span_min": ("u", 20.0, 60.0, "stay at a necroptotic death, span, min"),
    "dwell_apo_lo_min": ("u", 4.0, 10.0, "stay at an apoptotic death, shortest, min"),
    "dwell_apo_span_min": ("u", 4.0, 12.0, "stay at an apoptotic death, span, min"),
    "debris_per_mm2": ("u", 0.0, 30.0, "particles per mm²"),
    "debris_dye_fraction": ("u", 0.1, 0.4, "of the debris also in the dye channel"),
    # imaging
    "snr": ("u", 8.0, 20.0, "mean live-cell signal / background noise SD"),
    "background": ("log", 30.0, 200.0, "photons per pixel"),
    "camera_gain": ("u", 0.5, 2.0, "counts per photon"),
    "read_noise": ("u", 1.5, 6.0, "counts"),
    "camera_offset": ("int", 90, 500, "counts"),
    "immune_rel": ("u", 0.6, 1.3, "immune brightness / cell brightness"),
    "dye_rel": ("u", 1.0, 2.0, "dye plateau / cell brightness"),
    "texture": ("u", 0.15, 0.3, "cytoplasm texture, relative"),
    "psf_sigma_um": ("u", 0.5, 1.0, "µm"),
    "background_gradient": ("u", 0.0, 0.3, "relative slope of the background"),
    "illumination_gradient": ("u", 0.0, 0.1, "relative slope of the excitation"),
    "gradient_angle_deg": ("u", 0.0, 360.0, "deg"),
    "vignetting": ("u", 0.0, 0.1, "fall-off at the corners"),
    "background_texture": ("u", 0.0, 0.04, "relative SD of the background texture"),
    "background_texture_um": ("u", 30.0, 150.0, "µm"),
    "bleach_cells": ("u", 0.0, 0.1, "signal lost over the movie, cells channel"),
    "bleach_immune": ("u", 0.0, 0.1, "signal lost over the movie, immune channel"),
    "bleach_dye": ("u", 0.0, 0.1, "signal lost over the movie, dye channel"),
    "crosstalk_cells_to_dye": ("u", 0.0, 0.03, "fraction"),
    "crosstalk_cells_to_immune": ("u", 0.0, 0.03, "fraction"),
    "crosstalk_immune_to_cells": ("u", 0.0, 0.03, "fraction"),
    "drift_walk_um": ("u", 0.01, 0.06, "µm per sqrt(min), per axis"),
    "drift_total_px": ("u", 0.0, 5.0, "px of slow systematic drift over the movie"),
    "drift_angle_deg": ("u", 0.0, 360.0, "deg"),
    "drift_jumps": ("const", 0.0, 0.0, "expected stage jumps per movie"),
    "drift_jump_um": ("u", 2.0, 5.0, "µm"),
    "with_dye": ("const", 1, 1, "1: a dead-cell dye channel"),
}


@dataclass(frozen=True)
class Family:
    """A named family of movie conditions: mild ranges, one axis pushed to its extreme."""

    name: str
    extreme: str  # the axis pushed, in words
    ranges: Mapping[str, tuple] = field(default_factory=dict)  # overrides of the mild ranges

    def spec(self) -> dict[str, tuple]:
        """Every drawn quantity with its range in this family."""
        return {**_MILD, **self.ranges}


#: The families of :func:`random_config`. Seeds 0-99 of each are development seeds;
#: seeds >= 1000 are scoring seeds (see the module docstring).
FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        Family("baseline", "nothing: every condition within its mild range"),
        Family(
            "uneven_light",
            "strong background gradient, excitation gradient, vignetting 20-50 % at the "
            "corners, large background texture 5-15 %",
            {
                "background_gradient": ("u", 0.5, 1.0, "relative slope of the background"),
                "illumination_gradient": ("u", 0.15, 0.35, "relative slope of the excitation"),
                "vignetting": ("u", 0.2, 0.5, "fall-off at the corners"),
                "background_texture": ("u", 0.05, 0.15, "relative SD of the background texture"),
            },
        ),
        Family(
            "drift_crosstalk",
            "stage drift of 10-60 px with jumps, crosstalk 5-20 %, bleaching 20-50 % per channel",
            {
                "drift_walk_um": ("u", 0.05, 0.15, "µm per sqrt(min), per axis"),
                "drift_total_px": ("u", 20.0, 55.0, "px of slow systematic drift over the movie"),
                "drift_jumps": ("u", 1.0, 3.0, "expected stage jumps per movie"),
                "crosstalk_cells_to_dye": ("u", 0.05, 0.2, "fraction"),
                "crosstalk_cells_to_immune": ("u", 0.05, 0.2, "fraction"),
                "crosstalk_immune_to_cells": ("u", 0.05, 0.2, "fraction"),
                "bleach_cells": ("u", 0.2, 0.5, "signal lost over the movie, cells channel"),
                "bleach_immune": ("u", 0.2, 0.5, "signal lost over the movie, immune channel"),
                "bleach_dye": ("u", 0.2, 0.5, "signal lost over the movie, dye channel"),
            },
        ),
        Family(
            "dense",
            "confluent clumps: 50-90 % of the field covered, touching cells with many neighbours",
            {
                "coverage": ("u", 0.5, 0.9, "fraction of the field covered by cells"),
                "min_gap_rel": ("u", -0.35, -0.1, "gap between outlines at placement / radius"),
                "clumping": ("u", 0.6, 0.95, "fraction placed against another cell"),
                "cell_speed_um_per_min": ("u", 0.02, 0.1, "µm/min"),
                "p_death": ("u", 0.2, 0.35, "fraction of the cells that die"),
            },
        ),
        Family(
            "fine_fast",
            "fine pixels (0.25-0.4 µm) and fast frames (30-60 s)",
            {
                "pixel_size_um": ("u", 0.25, 0.4, "µm"),
                "interval_s": ("u", 30.0, 60.0, "s"),
            },
        ),
        Family(
            "coarse_slow",
            "coarse pixels (0.9-1.3 µm) and slow frames (5-10 min), longer movies (5-10 h)",
            {
                "pixel_size_um": ("u", 0.9, 1.3, "µm"),
                "interval_s": ("u", 300.0, 600.0, "s"),
                "duration_h": ("u", 5.0, 10.0, "h (at most 150 frames)"),
            },
        ),
        Family(
            "low_snr",
            "signal-to-noise ratio 3-6",
            {"snr": ("u", 3.0, 6.0, "mean live-cell signal / background noise SD")},
        ),
        Family(
            "macrophages_debris",
            "large slow immune cells (macrophages, 12-20 µm, 1-3 µm/min) and debris",
            {
                "immune_per_mm2": ("u", 150.0, 400.0, "immune cells per mm²"),
                "immune_radius_um": ("u", 6.0, 10.0, "µm (macrophages: 12-20 µm across)"),
                "immune_speed_um_per_min": ("u", 1.0, 3.0, "µm/min"),
                "immune_persistence_min": ("u", 10.0, 30.0, "min"),
                "debris_per_mm2": ("u", 300.0, 900.0, "particles per mm²"),
                "debris_dye_fraction": ("u", 0.2, 0.6, "of the debris also in the dye channel"),
            },
        ),
        Family(
            "mitosis_no_deaths",
            "many divisions (30-50 % of the cells) and no deaths: every call is false",
            {
                "p_death": ("const", 0.0, 0.0, "fraction of the cells that die"),
                "p_divide": ("u", 0.3, 0.5, "fraction of the cells that divide"),
            },
        ),
        Family(
            "no_dye",
            "no dead-cell dye channel: deaths from morphology alone",
            {"with_dye": ("const", 0, 0, "1: a dead-cell dye channel")},
        ),
    )
}


def _draw(spec: tuple, rng: np.random.Generator) -> float:
    kind, lo, hi = spec[:3]
    if kind == "const" or lo == hi:
        return lo
    if kind == "u":
        return float(rng.uniform(lo, hi))
    if kind == "log":
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    if kind == "int":
        return int(rng.integers(int(lo), int(hi) + 1))
    raise ValueError(f"unknown range kind {kind!r}")


def draw_conditions(family: str, seed: int) -> dict[str, float]:
    """The quantities drawn for ``seed`` of ``family`` (see :func:`family_table`)."""
    if family not in FAMILIES:
        from .errors import ConfigError

        raise ConfigError(
            f"unknown simulation family {family!r}; choose one of {', '.join(FAMILIES)}"
        )
    if seed < 0:
        from .errors import ConfigError

        raise ConfigError(f"seed must be >= 0, got {seed}")
    fam = zlib.crc32(family.encode())
    # one stream per quantity: adding a quantity or a family never changes the others
    return {
        key: _draw(spec, np.random.default_rng([seed, fam, zlib.crc32(key.encode())]))
        for key, spec in FAMILIES[family].spec().items()
    }


def random_config(
    family: str,
    seed: int,
    *,
    max_frames: int = 150,
    max_side_px: int = 512,
    **overrides,
) -> SimulationConfig:
    """A randomised movie of ``family`` (see :data:`FAMILIES`): every condition drawn.

    Parameters
    ----------
    family
        A name of :data:`FAMILIES`.
    seed
        Seeds 0-99 are development seeds (look at them while tuning); seeds >=
        :data:`SCORING_SEED_START` (1000) are scoring seeds (never look at them
        while tuning). The movie's own ``seed`` is this seed.
    max_frames, max_side_px
        Caps on the number of frames (the duration is cut) and on the image
        side (the field of view is cut), to keep benchmarks affordable.
    **overrides
        Fields of :class:`SimulationConfig` set after the draw.

    Returns
    -------
    SimulationConfig
        Enough cells that at least ~14 are scheduled to die (when the family
        has deaths; the death fraction rises up to 0.8 when the field cannot
        hold that many at 35 % coverage), with kinetics that fit in the movie
        (post-death time and the longest kinetics shortened in short movies).
        Above 50 % coverage the gap between outlines is lowered further (to
        -0.1 - (coverage - 0.5) radii at most), as confluent cells flatten
        against each other.
    """
    q = draw_conditions(family, seed)
    px = q["pixel_size_um"]
    dt_min = q["interval_s"] / 60.0
    ny = int(min(max_side_px, round(q["fov_y_um"] / px)))
    nx = int(min(max_side_px, round(q["fov_x_um"] / px)))
    n_frames = int(max(2, min(max_frames, round(q["duration_h"] * 60 / dt_min) + 1)))
    dur = (n_frames - 1) * dt_min
    area = ny * nx * px * px
    radius = q["cell_radius_um"]
    cell_area = math.pi * radius**2

    # kinetics must fit in the movie: onsets spread over at least ~40 % of it
    first, post = q["first_onset_min"], q["post_death_min"]
    shrink = [q["shrink_lo_min"], q["shrink_lo_min"] + q["shrink_span_min"]]
    swell = [q["swell_lo_min"], q["swell_lo_min"] + q["swell_span_min"]]
    budget = 0.6 * dur - first
    kin = max(shrink[1], swell[1] + 2.0)
    if post + kin > budget:
        post = max(min(post, 0.25 * dur), 10.0)
        if post + kin > budget:
            f = max((budget - post) / kin, 0.3)
            shrink = [max(v * f, 2 * dt_min) for v in shrink]
            swell = [max(v * f, 2 * dt_min) for v in swell]

    # enough deaths: at least ~14 cells scheduled to die, within a plausible crowding
    # confluence needs cells that flatten against each other: the denser, the more overlap
    min_gap_rel = q["min_gap_rel"]
    if q["coverage"] > 0.5:
        min_gap_rel = min(min_gap_rel, -0.1 - (q["coverage"] - 0.5))
    p_death = q["p_death"]
    # cells that overlap at placement flatten against each other: each covers less
    n_cells = int(round(q["coverage"] * area / (cell_area * (1 + min(min_gap_rel, 0) / 2))))
    if p_death > 0:
        cap = max(n_cells, int(round(0.35 * area / cell_area)))
        need = math.ceil(14 / p_death)
        if need > cap:
            p_death = min(0.8, 14 / cap)
            need = math.ceil(14 / p_death)
        n_cells = max(n_cells, min(need, cap))
    n_cells = max(n_cells, 8)
    p_apo = p_death * q["apoptotic_share"]
    p_nec = p_death - p_apo
    p_div = min(q["p_divide"], 1.0 - p_death)

    def bleach(total: float) -> float:  # fraction lost over the movie -> per minute
        return 1 - (1 - total) ** (1 / max(dur, 1e-9))

    with_dye = bool(q["with_dye"])
    crosstalk = {
        k: round(q[f"crosstalk_{k}"], 4)
        for k in ("cells_to_dye", "cells_to_immune", "immune_to_cells")
        if q[f"crosstalk_{k}"] > 0 and (with_dye or "dye" not in k)
    }
    drift_um = q["drift_total_px"] * px
    a = math.radians(q["drift_angle_deg"])
    v = drift_um / max(dur, 1e-9)
    values = dict(
        seed=seed,
        shape_yx=(ny, nx),
        n_frames=n_frames,
        pixel_size_um=px,
        interval_s=q["interval_s"],
        n_cells=n_cells,
        cell_radius_um=radius,
        cell_radius_sd_um=q["cell_radius_cv"] * radius,
        min_gap_um=min_gap_rel * radius,
        clumping=q["clumping"],
        cell_speed_um_per_min=q["cell_speed_um_per_min"],
        p_apoptotic=p_apo,
        p_necroptotic=p_nec,
        p_divide=p_div,
        first_onset_min=first,
        post_death_min=post,
        apoptotic_shrink_min=tuple(shrink),
        fragment_delay_min=(q["fragment_lo_min"], q["fragment_lo_min"] + q["fragment_span_min"]),
        apoptotic_dye_lag_min=(q["dye_lag_lo_min"], q["dye_lag_lo_min"] + q["dye_lag_span_min"]),
        necroptotic_swell_min=tuple(swell),
        ghost_level=q["ghost_level"],
        mitosis_round_min=q["mitosis_round_min"],
        n_immune=max(3, int(round(q["immune_per_mm2"] * area / 1e6))),
        immune_radius_um=q["immune_radius_um"],
        immune_speed_um_per_min=q["immune_speed_um_per_min"],
        immune_persistence_min=q["immune_persistence_min"],
        recruit_necroptotic_per_min=q["recruit_necroptotic_per_min"],
        recruit_apoptotic_per_min=q["recruit_apoptotic_per_min"],
        sensing_radius_um=q["sensing_radius_um"],
        dwell_necroptotic_min=(
            q["dwell_nec_lo_min"],
            q["dwell_nec_lo_min"] + q["dwell_nec_span_min"],
        ),
        dwell_apoptotic_min=(
            q["dwell_apo_lo_min"],
            q["dwell_apo_lo_min"] + q["dwell_apo_span_min"],
        ),
        n_debris=int(round(q["debris_per_mm2"] * area / 1e6)),
        debris_dye_fraction=q["debris_dye_fraction"],
        with_dye=with_dye,
        snr=q["snr"],
        cell_brightness=600.0,
        immune_brightness=600.0 * q["immune_rel"],
        dye_brightness=600.0 * q["dye_rel"],
        texture=q["texture"],
        psf_sigma_um=q["psf_sigma_um"],
        crosstalk=crosstalk,
        bleach_per_min=0.0,
        bleach_by_channel_per_min={
            col.ROLE_CELLS: bleach(q["bleach_cells"]),
            col.ROLE_IMMUNE: bleach(q["bleach_immune"]),
            col.ROLE_DYE: bleach(q["bleach_dye"]),
        },
        background=q["background"],
        background_gradient=q["background_gradient"],
        gradient_angle_deg=q["gradient_angle_deg"],
        illumination_gradient=q["illumination_gradient"],
        vignetting=q["vignetting"],
        background_texture=q["background_texture"],
        background_texture_um=q["background_texture_um"],
        read_noise=q["read_noise"],
        camera_offset=int(q["camera_offset"]),
        camera_gain=q["camera_gain"],
        drift_walk_um=q["drift_walk_um"],
        drift_velocity_um_per_min=(v * math.sin(a), v * math.cos(a)),
        drift_jumps_per_hour=q["drift_jumps"] / max(dur / 60.0, 1e-9),
        drift_jump_um=q["drift_jump_um"],
    )
    values.update(overrides)
    return SimulationConfig(**values)


def family_table(families: list[str] | None = None) -> pd.DataFrame:
    """The drawn quantities (rows) and their range in each family (columns), as text."""

    def fmt(spec: tuple) -> str:
        kind, lo, hi = spec[:3]
        if kind == "const" or lo == hi:
            return f"{lo:g}"
        sep = " to " if lo < 0 or hi < 0 else "-"
        return f"{lo:g}{sep}{hi:g}" + (" (log)" if kind == "log" else "")

    names = families or list(FAMILIES)
    rows = []
    for key, spec in _MILD.items():
        row = {"quantity": key, "unit / meaning": spec[3]}
        for name in names:
            s = FAMILIES[name].spec()[key]
            row[name] = fmt(s) if s is spec or name == "baseline" else f"**{fmt(s)}**"
        rows.append(row)
    return pd.DataFrame(rows)
