"""Synthetic time-lapse movies of dying cells whose truth is known.

The simulator is the ground truth every accuracy test and benchmark of
deathtrack is scored against. It models, per target cell, a fate (stay
alive, die by apoptosis, die by necroptosis, divide) with the morphology and
reporter kinetics of ``DESIGN.md``; immune cells in their own channel with
persistent random motility and mode-dependent recruitment to dying cells;
and an imaging model (optical blur, background, photobleaching, drift, shot
and read noise).

Truth definitions (the same ones the pipeline reports):

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

Examples
--------
>>> from deathtrack.simulate import SimulationConfig, simulate
>>> sim = simulate(SimulationConfig(shape_yx=(96, 96), n_frames=4, n_cells=2, n_immune=1))
>>> sim.render_frame(0).shape  # (C, Y, X): cells, immune, dye
(3, 96, 96)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from . import columns as col
from .config import Section, config_to_dict

logger = logging.getLogger(__name__)

__all__ = [
    "PRESETS",
    "Simulation",
    "SimulationConfig",
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


class SimulationConfig(Section):
    """Parameters of a simulated movie. The same config and seed give the same movie."""

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
        "touching cells.",
    )
    cell_speed_um_per_min: float = Field(0.15, ge=0, description="Target-cell random speed.")
    p_apoptotic: float = Field(0.25, ge=0, le=1, description="Fraction dying by apoptosis.")
    p_necroptotic: float = Field(0.25, ge=0, le=1, description="Fraction dying by necroptosis.")
    p_divide: float = Field(0.1, ge=0, le=1, description="Fraction dividing (a confounder).")
    first_onset_frame: int = Field(4, ge=1, description="Earliest onset of a death or mitosis.")
    post_death_frames: int = Field(
        18, ge=0, description="Latest onset leaves at least this many frames after death."
    )

    # apoptosis
    apoptotic_area_fraction: tuple[float, float] = Field(
        (0.5, 0.7), description="Final area relative to baseline (range) after shrinking."
    )
    apoptotic_shrink_frames: tuple[int, int] = Field(
        (4, 7), description="Frames over which an apoptotic cell shrinks (range)."
    )
    fragment_delay_frames: tuple[int, int] = Field(
        (3, 7), description="Frames from the end of shrinking to fragmentation (range)."
    )
    n_fragments: tuple[int, int] = Field((3, 6), description="Apoptotic bodies (range).")
    apoptotic_dye_lag_frames: tuple[int, int] = Field(
        (12, 30), description="Frames from death to half-maximal dye (secondary necrosis)."
    )

    # necroptosis
    necroptotic_area_fraction: tuple[float, float] = Field(
        (1.3, 1.9), description="Peak area relative to baseline (range) before rupture."
    )
    necroptotic_swell_frames: tuple[int, int] = Field(
        (5, 10), description="Frames of swelling and rounding before rupture (range)."
    )
    ghost_level: float = Field(
        0.15, ge=0, le=1, description="Reporter left in the ruptured ghost (of baseline)."
    )

    # mitosis
    mitosis_round_frames: int = Field(3, ge=1, description="Frames a cell is rounded up.")

    # immune cells
    n_immune: int = Field(15, ge=0, description="Number of immune cells.")
    immune_radius_um: float = Field(4.0, gt=0, description="Immune-cell radius in µm.")
    immune_speed_um_per_min: float = Field(3.0, ge=0, description="Immune-cell speed.")
    immune_persistence: float = Field(
        0.7, ge=0, lt=1, description="Direction persistence per frame (0 = random walk)."
    )
    recruit_necroptotic: float = Field(
        0.35,
        ge=0,
        le=1,
        description="Chance per frame that an immune cell within the sensing radius "
        "starts moving to a necroptotic death.",
    )
    recruit_apoptotic: float = Field(
        0.06, ge=0, le=1, description="Same as recruit_necroptotic, for apoptotic deaths."
    )
    sensing_radius_um: float = Field(90.0, gt=0, description="Range of the death signal.")
    dwell_frames_necroptotic: tuple[int, int] = Field(
        (15, 40), description="Frames a recruited immune cell stays at a necroptotic death."
    )
    dwell_frames_apoptotic: tuple[int, int] = Field(
        (3, 8), description="Frames a recruited immune cell stays at an apoptotic death."
    )

    # channels
    with_immune: bool = Field(True, description="Add an immune-cell channel.")
    with_dye: bool = Field(True, description="Add a dead-cell dye channel.")
    with_caspase: bool = Field(False, description="Add a caspase-3/7 reporter channel.")

    # imaging
    cell_brightness: float = Field(600.0, gt=0, description="Reporter photons per pixel.")
    immune_brightness: float = Field(500.0, gt=0, description="Immune photons per pixel.")
    dye_brightness: float = Field(900.0, gt=0, description="Dye plateau photons per pixel.")
    texture: float = Field(0.25, ge=0, lt=1, description="Cytoplasm texture (relative).")
    psf_sigma_px: float = Field(1.2, ge=0, description="Gaussian blur sigma in pixels.")
    background: float = Field(80.0, ge=0, description="Background photons per pixel.")
    background_gradient: float = Field(0.3, ge=0, description="Relative background slope.")
    bleach_per_frame: float = Field(0.004, ge=0, lt=1, description="Photobleaching per frame.")
    read_noise: float = Field(4.0, ge=0, description="Gaussian read noise SD (counts).")
    camera_offset: int = Field(100, ge=0, description="Camera offset (counts).")
    drift_um_per_frame: float = Field(0.1, ge=0, description="Stage drift random walk step.")

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
            "apoptotic_shrink_frames",
            "fragment_delay_frames",
            "n_fragments",
            "apoptotic_dye_lag_frames",
            "necroptotic_area_fraction",
            "necroptotic_swell_frames",
            "dwell_frames_necroptotic",
            "dwell_frames_apoptotic",
        ):
            lo, hi = getattr(self, name)
            if lo > hi or lo <= 0:
                raise ValueError(f"{name} must be a range (low, high) with 0 < low <= high")
        if self.apoptotic_area_fraction[1] > 0.8:
            raise ValueError("apoptotic_area_fraction must stay <= 0.8 (shrinking is a death)")
        if self.necroptotic_area_fraction[0] < 1.0:
            raise ValueError("necroptotic_area_fraction must be >= 1 (necroptotic cells swell)")
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
    "ignore": {"recruit_necroptotic": 0.0, "recruit_apoptotic": 0.0},
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
    background_map: np.ndarray  # (Y, X) relative background
    _truth: dict[str, pd.DataFrame] | None = None

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
            age = t - cell.fragment_frame
            spread = 1.0 + 0.6 * _smoothstep(age / 6.0)
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
            Apoptotic bodies carry the label of the cell they came from.
        """
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

    def ideal_frame(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Noise-free photon images (C, Y, X) at frame ``t`` and the truth labels."""
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
        return img, cells_lab, immune_lab

    def render_frame(self, t: int) -> np.ndarray:
        """Simulated camera image at frame ``t``, shape (C, Y, X), uint16."""
        from scipy import ndimage as ndi

        c = self.config
        if not 0 <= t < c.n_frames:
            raise IndexError(f"frame {t} is outside the movie (0..{c.n_frames - 1})")
        ideal, _, _ = self.ideal_frame(t)
        rng = np.random.default_rng([c.seed, 2, t])
        bleach = (1 - c.bleach_per_frame) ** t
        out = np.empty(ideal.shape, np.uint16)
        for k in range(ideal.shape[0]):
            sig = ideal[k]
            if c.psf_sigma_px > 0:
                sig = ndi.gaussian_filter(sig, c.psf_sigma_px)
            photons = sig * bleach + c.background * self.background_map
            counts = rng.poisson(np.maximum(photons, 0)).astype(np.float32)
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
            Positions are label centroids in pixels (y, x) and µm (y_um, x_um).
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
    T = cfg.n_frames
    px = cfg.pixel_size_um
    ny, nx = cfg.shape_yx
    H, W = ny * px, nx * px
    step_sd = cfg.cell_speed_um_per_min * cfg.interval_s / 60.0 / math.sqrt(2)

    # --- place cells (random sequential adsorption) ---
    radii = np.clip(
        rng.normal(cfg.cell_radius_um, cfg.cell_radius_sd_um, cfg.n_cells),
        0.5 * cfg.cell_radius_um,
        1.5 * cfg.cell_radius_um,
    )
    centers: list[np.ndarray] = []
    kept_r: list[float] = []
    for r in radii:
        for _ in range(400):
            p = rng.uniform([0.3 * r, 0.3 * r], [H - 0.3 * r, W - 0.3 * r])
            if all(np.hypot(*(p - q)) >= r + rq + cfg.min_gap_um for q, rq in zip(centers, kept_r)):
                centers.append(p)
                kept_r.append(float(r))
                break
    if len(centers) < cfg.n_cells:
        logger.warning("placed %d of %d cells: the field is too crowded", len(centers), cfg.n_cells)

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
            np.vstack([rng.uniform(0, 2 * np.pi, K), rng.normal(0, 0.06, (T - 1, K))]), axis=0
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
                    [rng.uniform(0, 2 * np.pi, len(ks)), rng.normal(0, 0.06, (T - 1, len(ks)))]
                ),
                axis=0,
            )
            age = np.arange(T) - d
            child.area_factor = 1.0 + 0.6 * _smoothstep(age / 12.0)  # daughters regrow
            child.roundness = np.clip(0.2 + 0.8 * age / 6.0, 0.2, 1.0)
            child.reporter = 1.0 + 0.25 * np.clip(1 - age / 4.0, 0, 1)
            child.dye = np.zeros(T)
            child.caspase = np.zeros(T)
            child.bleb = np.zeros(T)
            child.state = np.array([ALIVE] * T, dtype=object)
            child.moving = np.ones(T, bool)
            child.center = np.full((T, 2), np.nan)
            child.split_axis = (sign * math.sin(axis), sign * math.cos(axis))
            daughters.append(child)
    all_cells = cells + daughters

    # --- move cells with soft exclusion ---
    by_parent: dict[int, list[_Cell]] = {}
    for ch in daughters:
        by_parent.setdefault(ch.parent_id, []).append(ch)
    by_id = {cell.cell_id: cell for cell in all_cells}
    for t in range(1, T):
        for cell in all_cells:
            if not (cell.start <= t < cell.stop):
                continue
            if t == cell.start and cell.parent_id:
                parent = by_id[cell.parent_id]
                sy, sx = cell.split_axis
                off = 0.72 * parent.radius_um  # daughters touch at a narrow neck
                cell.center[t] = parent.center[t - 1] + off * np.array([sy, sx])
                continue
            prev = cell.center[t - 1]
            if not cell.moving[t]:
                cell.center[t] = prev
                continue
            step = rng.normal(0, step_sd, 2)
            if cell.parent_id and t - cell.start < 4:  # daughters move apart
                sy, sx = cell.split_axis
                step = step + 0.12 * cell.radius_um * np.array([sy, sx])
            prop = prev + step
            r = cell.radius_um * math.sqrt(cell.area_factor[t])
            prop = np.clip(prop, 0.3 * r, [H - 0.3 * r, W - 0.3 * r])
            ok = True
            for other in all_cells:
                if (
                    other is cell
                    or other.parent_id == cell.parent_id != 0
                    or not (other.start <= t < other.stop)
                ):
                    continue
                q = other.center[t] if not np.isnan(other.center[t, 0]) else other.center[t - 1]
                if np.isnan(q[0]):
                    continue
                ro = other.radius_um * math.sqrt(other.area_factor[t])
                gap = np.hypot(*(prop - q)) - r - ro
                if gap < min(cfg.min_gap_um, 0.0) - 0.5 and gap < np.hypot(*(prev - q)) - r - ro:
                    ok = False
                    break
            cell.center[t] = prop if ok else prev

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

    drift = np.cumsum(rng.normal(0, cfg.drift_um_per_frame, (T, 2)), axis=0)
    drift -= drift[0]
    texture_map = np.clip(1 + cfg.texture * _texture(rng, tex_size, 3.0), 0.2, None).astype(
        np.float32
    )
    yy, xx = np.mgrid[0:ny, 0:nx]
    bg = (
        1
        + cfg.background_gradient * ((xx / max(nx - 1, 1)) - 0.5)
        + 0.5 * cfg.background_gradient * ((yy / max(ny - 1, 1)) - 0.5)
    )
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
        background_map=bg.astype(np.float32),
    )


def _schedule_fate(cell: _Cell, cfg: SimulationConfig, rng: np.random.Generator) -> None:
    """Fill the per-frame arrays of ``cell`` according to its fate."""
    T = cfg.n_frames
    t = np.arange(T)
    if cell.fate == col.APOPTOTIC:
        shrink = int(
            rng.integers(cfg.apoptotic_shrink_frames[0], cfg.apoptotic_shrink_frames[1] + 1)
        )
        delay = int(rng.integers(cfg.fragment_delay_frames[0], cfg.fragment_delay_frames[1] + 1))
        latest = T - 1 - shrink - cfg.post_death_frames
        if latest < cfg.first_onset_frame:
            cell.fate = FATE_ALIVE
            return
        o = int(rng.integers(cfg.first_onset_frame, latest + 1))
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
        cell.reporter = np.where(
            frag, final**-0.6 * 0.985 ** np.maximum(t - cell.fragment_frame, 0), cell.reporter
        )
        cell.state = np.where(t < o, ALIVE, np.where(cell.area_factor > 0.85, DYING, DEAD)).astype(
            object
        )
        cell.moving = t < o
        lag = rng.integers(cfg.apoptotic_dye_lag_frames[0], cfg.apoptotic_dye_lag_frames[1] + 1)
        width = rng.uniform(2.0, 4.0)
        death_guess = o + shrink // 2
        cell.dye_half = death_guess + lag
        cell.dye = np.where(t >= death_guess, 1 / (1 + np.exp(-(t - cell.dye_half) / width)), 0.0)
        cell.dye = np.where(cell.dye < 0.02, 0.0, cell.dye)
        cas_on = o - int(rng.integers(2, 5))
        cell.caspase = np.clip((t - cas_on + 1) / 2.0, 0, 1)
    elif cell.fate == col.NECROPTOTIC:
        swell = int(
            rng.integers(cfg.necroptotic_swell_frames[0], cfg.necroptotic_swell_frames[1] + 1)
        )
        latest = T - 1 - swell - 1 - cfg.post_death_frames
        if latest < cfg.first_onset_frame:
            cell.fate = FATE_ALIVE
            return
        o = int(rng.integers(cfg.first_onset_frame, latest + 1))
        peak = rng.uniform(*cfg.necroptotic_area_fraction)
        prog = _smoothstep((t - o + 1) / swell)
        rupture = o + swell + int(rng.integers(0, 2))
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
        rep = np.where(t > rupture, g * 0.99 ** (t - rupture - 1), rep)
        cell.reporter = rep
        cell.state = np.where(t < o, ALIVE, np.where(t < rupture, DYING, DEAD)).astype(object)
        cell.moving = t < o
        cell.dye = np.where(t == rupture, drop, np.where(t > rupture, 1.0, 0.0))
    elif cell.fate == FATE_DIVIDE:
        rf = cfg.mitosis_round_frames
        latest = T - 4
        if latest < cfg.first_onset_frame + rf:
            cell.fate = FATE_ALIVE
            return
        d = int(rng.integers(cfg.first_onset_frame + rf, latest + 1))
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
    px_margin = cfg.immune_radius_um
    speed = cfg.immune_speed_um_per_min * cfg.interval_s / 60.0
    pos[0] = rng.uniform([px_margin, px_margin], [H - px_margin, W - px_margin], (M, 2))
    heading = rng.uniform(0, 2 * np.pi, M)
    angle[0] = heading
    dwell_left = np.zeros(M, int)
    visited: list[set[int]] = [set() for _ in range(M)]
    deaths = [c for c in cells if c.fate in (col.APOPTOTIC, col.NECROPTOTIC)]
    by_id = {c.cell_id: c for c in deaths}

    def death_frame(c: _Cell) -> int:
        if c.fate == col.NECROPTOTIC:
            return c.rupture
        return c.onset + 2

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
                    prob = (
                        cfg.recruit_necroptotic
                        if c.fate == col.NECROPTOTIC
                        else cfg.recruit_apoptotic
                    )
                    if d < cfg.sensing_radius_um and rng.uniform() < prob:
                        tgt = c.cell_id
                        lo, hi = (
                            cfg.dwell_frames_necroptotic
                            if c.fate == col.NECROPTOTIC
                            else cfg.dwell_frames_apoptotic
                        )
                        dwell_left[m] = int(rng.integers(lo, hi + 1))
                        break
            turn = rng.normal(0, math.sqrt(1 - cfg.immune_persistence) * 1.5)
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


def write_simulation(
    sim: Simulation, out_dir: str | Path, *, name: str = "movie", progress: bool = False
) -> dict[str, Path]:
    """Write a simulated movie and its truth to ``out_dir``.

    Writes ``<name>.ome.tif`` (T, C, Y, X uint16 with calibration and channel
    names), and in ``<name>_truth/``: ``events.csv``, ``cells.csv``,
    ``immune.csv``, ``lineage.csv``, ``recruitment.csv``,
    ``labels_cells.tif``, ``labels_immune.tif`` and ``simulation.toml`` (the
    config that regenerates it with ``deathtrack simulate --config``).
    Frames are streamed: memory holds one frame, not the movie.

    Returns
    -------
    dict of Path
        Paths of everything written, by key (``movie``, ``events``, ...).
    """
    import uuid as uuid_mod

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

    paths["labels_cells"] = write_labels(
        truth_dir / "labels_cells.tif",
        (sim.render_labels(t)[0] for t in range(T)),
        shape=(T, ny, nx),
        dtype=np.int32,
    )
    paths["labels_immune"] = write_labels(
        truth_dir / "labels_immune.tif",
        (sim.render_labels(t)[1] for t in range(T)),
        shape=(T, ny, nx),
        dtype=np.int32,
    )
    truth = sim.truth(progress=progress)
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
        uuid=str(uuid_mod.uuid5(uuid_mod.NAMESPACE_URL, "deathtrack:" + c.model_dump_json())),
    )
    cfg_path = truth_dir / "simulation.toml"
    cfg_path.write_text(tomli_w.dumps(config_to_dict(c)), encoding="utf-8")
    paths["config"] = cfg_path
    return paths
