"""Synthetic 3D time-lapse movies (T, C, Z, Y, X) of dying cells whose truth is known.

The 3D counterpart of :mod:`deathtrack.simulate`, for two-photon intravital
and spinning-disk z-stacks. The biology is the 2D simulator's, reused as it
is: each target cell's fate and kinetics (apoptotic shrinkage, blebs,
fragments and late dye; necroptotic swelling, rounding, rupture, ghost and
early dye) are drawn by :func:`deathtrack.simulate._schedule_fate` from the
same config fields. What is 3D here:

- cells are star-convex bodies in µm space (azimuthal harmonics, a polar
  flattening that a necroptotic cell loses as it rounds up), apoptotic
  bodies and blebs are spheres; the 2D simulator's ``area_factor`` is read
  as the ratio of the cell's *equivalent area* (see below), so its radius
  scales as ``sqrt(area_factor)`` and its volume as ``area_factor ** 1.5``;
- immune cells are prolate ellipsoids on a persistent random walk in 3D,
  recruited to deaths within a sensing radius (3D distance) with the
  mode-dependent rates and dwell times of the 2D config;
- the imaging model: anisotropic voxels (``z_step_um`` along Z,
  ``pixel_size_um`` in Y and X), an axial PSF wider than the lateral one,
  a lateral PSF that widens with depth (``depth_blur``), signal attenuated
  with depth (``attenuation_um``, the e-folding depth in tissue), an
  optional tissue-like background that varies in 3D, photobleaching, shot
  noise, camera gain, read noise and offset. There is no stage drift and
  no division (``p_divide`` must be 0).

Truth (the same definitions as 2D, in 3D):

``area_um2`` (the *equivalent area*)
    ``pi * r_eq**2`` with ``r_eq`` the radius of the sphere of the object's
    volume: a monotone function of the volume (``volume_um3`` is given too)
    that moves like a 2D cell's area, so "area >= 15 % below baseline" keeps
    its meaning (a volume >= 22 % below baseline).
``frame``
    apoptosis: the first frame at or after onset whose equivalent area is at
    or below 0.85 x the median of the frames before onset; necroptosis: the
    rupture frame (half of the reporter's drop), as in 2D.
positions
    label centroids in voxels (``z, y, x``) and µm (``z_um, y_um, x_um``).
``recruitment.csv``
    ``n_within_r``: immune cells whose centroid lies within ``truth_radius_um``
    of the event in 3D; ``n_contact``: immune masks touching the cell's mask
    dilated by ``truth_contact_um`` (µm along every axis, as
    :mod:`deathtrack.recruit` does).

Seeds 0-99 are development seeds; seeds from 1000 on are for scoring only
(:data:`deathtrack.simulate.DEV_SEEDS`, :data:`~deathtrack.simulate.SCORING_SEED_START`).

Examples
--------
>>> from deathtrack.simulate3d import Simulation3DConfig, simulate_3d
>>> sim = simulate_3d(Simulation3DConfig(shape_yx=(48, 48), n_z=8, n_frames=3, n_cells=1,
...                                      n_immune=1))
>>> sim.render_frame(0).shape  # (C, Z, Y, X): cells, immune, dye
(3, 8, 48, 48)
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from . import columns as col
from .config import config_to_dict
from .simulate import (
    ALIVE,
    CELL_ID,
    DEAD,
    DYING,
    FATE,
    FATE_ALIVE,
    IMMUNE_ID,
    STATE,
    SimulationConfig,
    _Cell,
    _crosstalk_key,
    _draw_frames,
    _illumination_maps,
    _schedule_fate,
    _smooth_field,
    _smoothstep,
    _star_radius,
    _texture,
)

__all__ = [
    "VOLUME_UM3",
    "Simulation3D",
    "Simulation3DConfig",
    "equivalent_area_um2",
    "random_config_3d",
    "simulate_3d",
    "write_simulation_3d",
]

VOLUME_UM3 = "volume_um3"


def equivalent_area_um2(volume_um3):
    """``pi * r**2`` of the sphere of volume ``volume_um3`` (µm³ -> µm²).

    The 3D pipeline's ``area_um2``: a monotone function of the volume that
    moves as a 2D cell's area does (a sphere whose radius grows by 10 % has
    its equivalent area grow by 21 %, as a disc's area).

    Examples
    --------
    >>> round(float(equivalent_area_um2(4 / 3 * np.pi * 5.0**3)), 6) == round(np.pi * 25, 6)
    True
    """
    v = np.maximum(np.asarray(volume_um3, dtype=float), 0.0)
    return np.pi * (3.0 * v / (4.0 * np.pi)) ** (2.0 / 3.0)


class Simulation3DConfig(SimulationConfig):
    """Parameters of a simulated 3D movie: the 2D simulator's fields (biology, channels,
    camera) plus the z axis and the optics of thick tissue. Defaults are a small
    two-photon-like field: 128 x 128 pixels of 0.65 µm, 20 slices 2.6 µm apart (4x the
    pixel size), 20 frames of 2 min."""

    # geometry (overrides of the 2D defaults for a small z-stack)
    shape_yx: tuple[int, int] = Field((128, 128), description="Image size (Y, X) in pixels.")
    n_frames: int = Field(20, ge=1, description="Number of frames.")
    n_z: int = Field(20, ge=2, le=512, description="Number of z slices.")
    z_step_um: float = Field(
        2.6, gt=0, description="Distance between z slices, µm (2-5x the pixel size is usual)."
    )

    # target cells and their kinetics: a short movie still shows every death
    n_cells: int = Field(10, ge=0, description="Number of target cells at the start.")
    cell_radius_um: float = Field(7.0, gt=0, description="Mean target-cell radius in µm.")
    cell_radius_sd_um: float = Field(0.7, ge=0, description="SD of the cell radius in µm.")
    min_gap_um: float = Field(
        4.0, description="Smallest gap between cell surfaces at placement, µm."
    )
    cell_speed_um_per_min: float = Field(0.1, ge=0, description="Target-cell random speed.")
    p_apoptotic: float = Field(0.3, ge=0, le=1, description="Fraction dying by apoptosis.")
    p_necroptotic: float = Field(0.3, ge=0, le=1, description="Fraction dying by necroptosis.")
    p_divide: float = Field(0.0, ge=0, le=0, description="Divisions are not simulated in 3D.")
    first_onset_min: float = Field(
        6.0, ge=0, description="Earliest onset of a death (min; at least frame 1)."
    )
    post_death_min: float = Field(
        14.0, ge=0, description="Latest onset leaves at least this long after death (min)."
    )
    apoptotic_shrink_min: tuple[float, float] = Field(
        (6.0, 10.0), description="Minutes over which an apoptotic cell shrinks (range)."
    )
    fragment_delay_min: tuple[float, float] = Field(
        (4.0, 8.0), description="Minutes from the end of shrinking to fragmentation (range)."
    )
    apoptotic_dye_lag_min: tuple[float, float] = Field(
        (16.0, 40.0), description="Minutes from death to half-maximal dye (secondary necrosis)."
    )
    necroptotic_swell_min: tuple[float, float] = Field(
        (8.0, 12.0), description="Minutes of swelling and rounding before rupture (range)."
    )

    # immune cells
    n_immune: int = Field(16, ge=0, description="Number of immune cells.")
    immune_radius_um: float = Field(3.5, gt=0, description="Immune-cell radius in µm.")
    immune_speed_um_per_min: float = Field(4.0, ge=0, description="Immune-cell speed.")
    sensing_radius_um: float = Field(70.0, gt=0, description="Range of the death signal (3D).")

    # optics of thick tissue
    psf_sigma_um: float = Field(
        0.5, ge=0, description="Lateral Gaussian PSF sigma at the top slice, µm."
    )
    psf_axial_sigma_um: float = Field(
        1.5, ge=0, description="Axial (z) Gaussian PSF sigma, µm (wider than the lateral one)."
    )
    depth_blur: float = Field(
        1.0,
        ge=0,
        le=10,
        description="Lateral PSF widening with depth: sigma at the bottom slice is "
        "(1 + depth_blur) x psf_sigma_um, linearly in between.",
    )
    attenuation_um: float = Field(
        80.0,
        gt=0,
        description="Signal attenuation with depth: the fluorescence collected from depth z "
        "is exp(-z / attenuation_um) of the top slice's (scattering in tissue).",
    )
    tissue_background: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="Tissue-like background: relative SD of a smooth 3D texture of the "
        "background (autofluorescent stroma); 0 for none.",
    )
    tissue_scale_um: float = Field(40.0, gt=0, description="Scale of that texture, µm.")

    # truth recruitment table (frames around each death)
    truth_pre_frames: int = Field(10, ge=0, description="Frames before death in the table.")
    truth_post_frames: int = Field(20, ge=0, description="Frames after death in the table.")

    @model_validator(mode="after")
    def _check_3d(self) -> Simulation3DConfig:
        if any(abs(v) > 0 for v in (*self.drift_velocity_um_per_min, self.drift_jumps_per_hour)):
            raise ValueError("stage drift is not simulated in 3D: leave drift_* at 0")
        return self

    @property
    def depth_um(self) -> float:
        """Depth of the stack, µm."""
        return self.n_z * self.z_step_um


@dataclass
class Simulation3D:
    """A simulated 3D movie: dynamics are computed; frames are rendered on demand."""

    config: Simulation3DConfig
    cells: list[_Cell]  # centre (T, 3) µm (z, y, x); fragments (n, 4): dz, dy, dx, rf
    polar: np.ndarray  # (N, 2): polar flattening amplitude and phase of each cell
    immune_pos: np.ndarray  # (T, M, 3) µm
    immune_dir: np.ndarray  # (T, M, 3) unit heading
    immune_target: np.ndarray  # (T, M) event cell_id or 0
    immune_arrested: np.ndarray  # (T, M) bool
    immune_shape: np.ndarray  # (M, 2): a (long), b (short) semi-axes, µm
    texture_map: np.ndarray  # (S, S) float, mean 1
    background_map: np.ndarray  # (Z, Y, X) relative background
    _truth: dict[str, pd.DataFrame] | None = None
    _label_store: tuple[np.ndarray, np.ndarray] | None = None  # (T, Z, Y, X) cells, immune

    @property
    def shape(self) -> tuple[int, ...]:
        """(T, C, Z, Y, X)."""
        c = self.config
        return (c.n_frames, len(c.channel_names), c.n_z, *c.shape_yx)

    # -- rendering ---------------------------------------------------------

    def _grid(self, center_um, reach_um):
        """Voxel box around ``center_um`` (z, y, x) and the µm offsets of its voxels."""
        c = self.config
        sp = (c.z_step_um, c.pixel_size_um, c.pixel_size_um)
        n = (c.n_z, *c.shape_yx)
        sl, offs = [], []
        for k in range(3):
            lo = max(int(math.floor((center_um[k] - reach_um) / sp[k])), 0)
            hi = min(int(math.ceil((center_um[k] + reach_um) / sp[k])) + 1, n[k])
            if lo >= hi:
                return None, None
            sl.append(slice(lo, hi))
            offs.append(np.arange(lo, hi) * sp[k] - center_um[k])
        dz, dy, dx = np.meshgrid(*offs, indexing="ij")
        return tuple(sl), (dz, dy, dx)

    def _cell_pieces(self, i: int, cell: _Cell, t: int) -> list[tuple]:
        """('star'|'ball', centre µm, params) making up ``cell`` at frame ``t``."""
        c = self.config
        ctr = cell.center[t]
        r = cell.radius_um * math.sqrt(cell.area_factor[t])
        if cell.fragment_frame >= 0 and t >= cell.fragment_frame:
            age_min = (t - cell.fragment_frame) * c.interval_min
            spread = 1.0 + 0.6 * _smoothstep(age_min / 12.0)
            return [
                ("ball", ctr + np.array([dz, dy, dx]) * r * spread, rf * r)
                for dz, dy, dx, rf in cell.fragments
            ]
        amps = cell.harm_amp * cell.roundness[t]
        pz = self.polar[i, 0] * cell.roundness[t]
        pieces = [("star", ctr, (r, amps, cell.harm_k, cell.phase[t], pz, self.polar[i, 1]))]
        if cell.bleb[t] > 0:
            rng = np.random.default_rng([c.seed, 7, cell.cell_id, t])
            n = int(round(3 + 6 * cell.bleb[t]))
            for _ in range(n):
                u = rng.normal(size=3)
                u /= np.linalg.norm(u) + 1e-12
                rb = r * rng.uniform(0.14, 0.22) * (0.5 + 0.5 * cell.bleb[t])
                az = math.atan2(u[1], u[2])
                rr = _star_radius(np.array([az]), r, amps, cell.harm_k, cell.phase[t])[0]
                rr *= 1 + pz * math.cos(2 * math.acos(np.clip(u[0], -1, 1)) + self.polar[i, 1])
                pieces.append(("ball", ctr + 0.95 * rr * u, rb))
        return pieces

    def _render_cells(self, t: int) -> tuple[np.ndarray, dict, np.ndarray]:
        """Owner label of each voxel, the cells drawn, and each voxel's relative radius."""
        c = self.config
        shape = (c.n_z, *c.shape_yx)
        owner = np.zeros(shape, np.int32)
        best = np.full(shape, np.inf, np.float32)
        drawn: dict[int, tuple[int, _Cell]] = {}
        for i, cell in enumerate(self.cells):
            if not (cell.start <= t < cell.stop):
                continue
            for kind, ctr, p in self._cell_pieces(i, cell, t):
                if kind == "star":
                    r, amps, ks, ph, pz, pph = p
                    reach = r * (1 + np.abs(amps).sum()) * (1 + abs(pz)) + 1
                else:
                    reach = p + 1
                sl, d = self._grid(ctr, reach)
                if sl is None:
                    continue
                dz, dy, dx = d
                dist = np.sqrt(dz * dz + dy * dy + dx * dx)
                if kind == "star":
                    rad = _star_radius(np.arctan2(dy, dx), r, amps, ks, ph)
                    polar = np.arccos(np.clip(dz / np.maximum(dist, 1e-9), -1, 1))
                    rad = rad * (1 + pz * np.cos(2 * polar + pph))
                else:
                    rad = p
                rho = (dist / np.maximum(rad, 1e-6)).astype(np.float32)
                sub = best[sl]
                win = (rho < 1) & (rho < sub)
                sub[win] = rho[win]
                owner[sl][win] = cell.cell_id
                drawn[cell.cell_id] = (i, cell)
        return owner, drawn, best

    def _render_immune(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        shape = (c.n_z, *c.shape_yx)
        owner = np.zeros(shape, np.int32)
        best = np.full(shape, np.inf, np.float32)
        for m in range(self.immune_pos.shape[1]):
            a, b = self.immune_shape[m]
            u = self.immune_dir[t, m]
            sl, d = self._grid(self.immune_pos[t, m], a + 1)
            if sl is None:
                continue
            dz, dy, dx = d
            along = dz * u[0] + dy * u[1] + dx * u[2]
            across2 = np.maximum(dz * dz + dy * dy + dx * dx - along * along, 0)
            rho = np.sqrt(along * along / a**2 + across2 / b**2).astype(np.float32)
            sub = best[sl]
            win = (rho < 1) & (rho < sub)
            sub[win] = rho[win]
            owner[sl][win] = m + 1
        return owner, best

    def render_labels(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Truth label volumes at frame ``t``: cells (cell_id) and immune (immune_id),
        each of shape (Z, Y, X), int32. Apoptotic bodies carry their cell's label."""
        if self._label_store is not None:
            return np.asarray(self._label_store[0][t]), np.asarray(self._label_store[1][t])
        return self._render_cells(t)[0], self._render_immune(t)[0]

    def ideal_frame(self, t: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Noise-free photon volumes (C, Z, Y, X) at frame ``t`` and the truth labels."""
        c = self.config
        names = c.channel_names
        ci = {n: i for i, n in enumerate(names)}
        shape = (c.n_z, *c.shape_yx)
        img = np.zeros((len(names), *shape), np.float32)
        cells_lab, drawn, rho_cells = self._render_cells(t)
        immune_lab, rho_immune = self._render_immune(t)
        tex = self.texture_map
        ts = tex.shape[0]
        sp = (c.z_step_um, c.pixel_size_um, c.pixel_size_um)
        boxes = _bboxes(cells_lab)
        for cid, sl in boxes.items():
            _, cell = drawn[cid]
            mask = cells_lab[sl] == cid
            zz, yy, xx = np.mgrid[sl]
            cz, cy, cx = cell.center[t]
            oy, ox = cell.tex_offset
            ty = (yy - int(round(cy / sp[1])) + oy + 7 * zz) % ts
            tx = (xx - int(round(cx / sp[2])) + ox + 13 * zz) % ts
            thick = 0.5 + 0.5 * _smoothstep((1 - rho_cells[sl]) / 0.35)
            level = c.cell_brightness * cell.reporter[t] * tex[ty, tx] * thick
            r = cell.radius_um * math.sqrt(cell.area_factor[t])
            fragmented = cell.fragment_frame >= 0 and t >= cell.fragment_frame
            dist = np.sqrt((zz * sp[0] - cz) ** 2 + (yy * sp[1] - cy) ** 2 + (xx * sp[2] - cx) ** 2)
            nucleus = dist < 0.4 * r
            if not fragmented and cell.state[t] != DEAD:
                level = np.where(nucleus, level * 0.85, level)
            img[0][sl][mask] = level[mask]
            if c.with_dye and cell.dye[t] > 0:
                region = mask if fragmented or cell.fate == col.APOPTOTIC else mask & nucleus
                img[ci[col.ROLE_DYE]][sl][region] = c.dye_brightness * cell.dye[t]
            if c.with_caspase and cell.caspase[t] > 0:
                img[ci[col.ROLE_CASPASE]][sl][mask] = c.cell_brightness * cell.caspase[t]
        if c.with_immune:
            for lab, sl in _bboxes(immune_lab).items():
                mask = immune_lab[sl] == lab
                zz, yy, xx = np.mgrid[sl]
                ty = (yy * 3 + 17 * lab + 5 * zz) % ts
                tx = (xx * 3 + 29 * lab + 11 * zz) % ts
                thick = 0.5 + 0.5 * _smoothstep((1 - rho_immune[sl]) / 0.35)
                level = c.immune_brightness * (0.6 + 0.4 * tex[ty, tx]) * thick
                img[ci[col.ROLE_IMMUNE]][sl][mask] = level[mask]
        scale = c.photon_scale()
        if scale != 1.0:
            img *= np.float32(scale)
        return img, cells_lab, immune_lab

    def render_frame(self, t: int) -> np.ndarray:
        """Simulated camera volume at frame ``t``, shape (C, Z, Y, X), uint16.

        Order: depth attenuation of the signal, axial and lateral PSF blur (the
        lateral PSF widening with depth), photobleaching, crosstalk, background
        (with its gradient and tissue texture), shot noise, gain, read noise, offset.
        """
        from scipy import ndimage as ndi

        c = self.config
        if not 0 <= t < c.n_frames:
            raise IndexError(f"frame {t} is outside the movie (0..{c.n_frames - 1})")
        ideal, _, _ = self.ideal_frame(t)
        names = c.channel_names
        rng = np.random.default_rng([c.seed, 2, t])
        px, dz = c.pixel_size_um, c.z_step_um
        depth = (np.arange(c.n_z) + 0.5) * dz
        attn = np.exp(-depth / c.attenuation_um).astype(np.float32)[:, None, None]
        s0 = c.psf_sigma_um
        s_z = np.asarray(s0 * (1 + c.depth_blur * np.arange(c.n_z) / max(c.n_z - 1, 1)))
        extra = np.sqrt(np.maximum(s_z**2 - s0**2, 0)) / px
        blurred = []
        for sig in ideal:
            sig = sig * attn
            sigma = (c.psf_axial_sigma_um / dz, s0 / px, s0 / px)
            if max(sigma) > 0:
                sig = ndi.gaussian_filter(sig, sigma)
            for k in range(c.n_z):
                if extra[k] > 0.05:
                    sig[k] = ndi.gaussian_filter(sig[k], extra[k])
            blurred.append(sig)
        bleach = [float((1 - c.bleach_rate(n)) ** (t * c.interval_min)) for n in names]
        out = np.empty(ideal.shape, np.uint16)
        for k in range(ideal.shape[0]):
            photons = blurred[k] * bleach[k]
            for key, frac in c.crosstalk.items():
                src, dst = _crosstalk_key(key)
                if dst == names[k] and src in names and frac > 0:
                    j = names.index(src)
                    photons = photons + blurred[j] * float(frac * bleach[j])
            photons = photons + c.background * self.background_map
            counts = rng.poisson(np.maximum(photons, 0)).astype(np.float32)
            if c.camera_gain != 1.0:
                counts *= np.float32(c.camera_gain)
            if c.read_noise > 0:
                counts += rng.normal(0, c.read_noise, counts.shape).astype(np.float32)
            out[k] = np.clip(np.round(counts + c.camera_offset), 0, 65535).astype(np.uint16)
        return out

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Yield rendered frames (C, Z, Y, X) one at a time."""
        for t in range(self.config.n_frames):
            yield self.render_frame(t)

    # -- truth -------------------------------------------------------------

    def truth(self) -> dict[str, pd.DataFrame]:
        """Truth tables: ``events``, ``cells``, ``immune``, ``lineage`` (empty) and
        ``recruitment``; positions in voxels (z, y, x) and µm (z_um, y_um, x_um)."""
        if self._truth is None:
            self._truth = self._compute_truth()
        return self._truth

    def _compute_truth(self) -> dict[str, pd.DataFrame]:
        c = self.config
        sp = np.array([c.z_step_um, c.pixel_size_um, c.pixel_size_um])
        voxel = float(np.prod(sp))
        T = c.n_frames
        by_id = {cell.cell_id: cell for cell in self.cells}
        cell_rows, immune_rows, immune_pos = [], [], []
        areas: dict[int, dict[int, float]] = {cid: {} for cid in by_id}
        for t in range(T):
            cells_lab, immune_lab = self.render_labels(t)
            for cid, zyx, n in _centroids(cells_lab):
                cell = by_id[cid]
                vol = n * voxel
                areas[cid][t] = float(equivalent_area_um2(vol))
                cell_rows.append((t, cid, *zyx, *(zyx * sp), areas[cid][t], vol, cell.fate))
            rows = _centroids(immune_lab)
            for mid, zyx, _ in rows:
                m = mid - 1
                immune_rows.append(
                    (
                        t,
                        mid,
                        *zyx,
                        *(zyx * sp),
                        int(self.immune_target[t, m]),
                        bool(self.immune_arrested[t, m]),
                    )
                )
            immune_pos.append(np.array([r[1] * sp for r in rows]).reshape(-1, 3))
        pos_cols = [col.Z, col.Y, col.X, col.Z_UM, col.Y_UM, col.X_UM]
        cells_df = pd.DataFrame(
            cell_rows, columns=[col.FRAME, CELL_ID, *pos_cols, col.AREA_UM2, VOLUME_UM3, FATE]
        )
        cells_df[STATE] = ALIVE
        cells_df[col.PARENT_ID] = 0
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
            row = cells_df[(cells_df[CELL_ID] == cell.cell_id) & (cells_df[col.FRAME] == frame)]
            row = row.iloc[0]
            hit = np.flatnonzero(cell.dye >= 0.5) if c.with_dye else np.array([])
            event_rows.append(
                {
                    CELL_ID: cell.cell_id,
                    col.MODE: cell.fate,
                    col.ONSET_FRAME: int(cell.onset),
                    col.FRAME: int(frame),
                    col.T_S: frame * c.interval_s,
                    col.DYE_FRAME: float(hit[0]) if hit.size else math.nan,
                    **{k: float(row[k]) for k in pos_cols},
                    "baseline_area_um2": baseline,
                }
            )
        ev_cols = [CELL_ID, col.MODE, col.ONSET_FRAME, col.FRAME, col.T_S, col.DYE_FRAME]
        events = pd.DataFrame(event_rows, columns=[*ev_cols, *pos_cols, "baseline_area_um2"])
        events = events.sort_values([col.FRAME, CELL_ID], kind="stable").reset_index(drop=True)
        events.insert(0, col.EVENT_ID, np.arange(1, len(events) + 1))
        for ev in events.itertuples(index=False):
            rows = cells_df[CELL_ID] == ev.cell_id
            f = cells_df[col.FRAME]
            cells_df.loc[rows & (f >= ev.onset_frame), STATE] = DYING
            cells_df.loc[rows & (f >= ev.frame), STATE] = DEAD
        immune_df = pd.DataFrame(
            immune_rows, columns=[col.FRAME, IMMUNE_ID, *pos_cols, "target_cell_id", "arrested"]
        )
        lineage = pd.DataFrame(columns=[col.PARENT_ID, col.CHILD_ID, col.FRAME], dtype=np.int64)
        return {
            "events": events,
            "cells": cells_df,
            "immune": immune_df,
            "lineage": lineage,
            "recruitment": self._truth_recruitment(events, immune_pos),
        }

    def _truth_recruitment(self, events: pd.DataFrame, immune_pos) -> pd.DataFrame:
        """Immune cells within R of each event (3D, by centroid) and touching its mask."""
        from scipy import ndimage as ndi

        c = self.config
        T = c.n_frames
        spacing = (c.z_step_um, c.pixel_size_um, c.pixel_size_um)
        grow = [int(math.ceil(c.truth_contact_um / s)) + 1 for s in spacing]
        windows: dict[int, list] = {}
        for ev in events.itertuples(index=False):
            for dt in range(-c.truth_pre_frames, c.truth_post_frames + 1):
                if 0 <= ev.frame + dt < T:
                    windows.setdefault(ev.frame + dt, []).append((ev, dt))
        rows = []
        for t in sorted(windows):
            cells_lab, immune_lab = self.render_labels(t)
            boxes = _bboxes(cells_lab)
            pos = immune_pos[t]
            for ev, dt in windows[t]:
                centre = np.array([ev.z_um, ev.y_um, ev.x_um])
                n_within = int(np.sum(np.linalg.norm(pos - centre, axis=1) <= c.truth_radius_um))
                sl = boxes.get(ev.cell_id)
                n_contact = 0
                if sl is not None:
                    # in the cell's box grown by the tolerance (voxels along each axis)
                    sl = tuple(
                        slice(max(a.start - g, 0), min(a.stop + g, n))
                        for a, g, n in zip(sl, grow, cells_lab.shape)
                    )
                    mask = cells_lab[sl] == ev.cell_id
                    if c.truth_contact_um > 0:  # dilated by the tolerance in µm, as recruit does
                        mask = ndi.distance_transform_edt(~mask, sampling=spacing) <= (
                            c.truth_contact_um
                        )
                    n_contact = int(np.count_nonzero(np.unique(immune_lab[sl][mask])))
                rows.append((ev.event_id, dt, dt * c.interval_s, n_within, n_contact))
        rec = pd.DataFrame(
            rows, columns=[col.EVENT_ID, col.DT, col.T_REL_S, col.N_WITHIN_R, col.N_CONTACT]
        )
        return rec.sort_values([col.EVENT_ID, col.DT], kind="stable").reset_index(drop=True)


def _centroids(labels: np.ndarray) -> list[tuple[int, np.ndarray, int]]:
    """(label, centroid (z, y, x) in voxels, n voxels) of every label, sorted by label."""
    lab = labels.ravel()
    idx = np.flatnonzero(lab)
    if not idx.size:
        return []
    ids = lab[idx]
    zz, rem = np.divmod(idx, labels.shape[1] * labels.shape[2])
    yy, xx = np.divmod(rem, labels.shape[2])
    size = int(ids.max()) + 1
    cnt = np.bincount(ids, minlength=size)
    out = []
    sums = [np.bincount(ids, weights=a, minlength=size) for a in (zz, yy, xx)]
    for i in np.flatnonzero(cnt):
        out.append((int(i), np.array([s[i] / cnt[i] for s in sums]), int(cnt[i])))
    return out


def _bboxes(labels: np.ndarray) -> dict[int, tuple[slice, ...]]:
    from scipy import ndimage as ndi

    return {i: sl for i, sl in enumerate(ndi.find_objects(labels), start=1) if sl is not None}


# ---------------------------------------------------------------------------
# dynamics


def _place_cells_3d(cfg: Simulation3DConfig, rng: np.random.Generator):
    """Random sequential placement of spheres in the field (z kept inside the stack)."""
    H, W = cfg.shape_yx[0] * cfg.pixel_size_um, cfg.shape_yx[1] * cfg.pixel_size_um
    D = cfg.depth_um
    radii = np.clip(
        rng.normal(cfg.cell_radius_um, cfg.cell_radius_sd_um, cfg.n_cells),
        0.5 * cfg.cell_radius_um,
        1.5 * cfg.cell_radius_um,
    )
    centers, kept = np.zeros((0, 3)), np.zeros(0)
    for r in radii:
        zlo, zhi = (r + 1.0, D - r - 1.0) if D > 2 * r + 2 else (D / 2, D / 2)
        lo = np.array([zlo, 0.3 * r, 0.3 * r])
        hi = np.array([zhi, H - 0.3 * r, W - 0.3 * r])
        for _ in range(400):
            p = rng.uniform(lo, hi)
            # room for a necroptotic cell to swell (radius x 1.4) without touching
            if not len(centers) or np.all(
                np.linalg.norm(p - centers, axis=1) >= r + kept + cfg.min_gap_um
            ):
                centers = np.vstack([centers, p])
                kept = np.append(kept, r)
                break
    return centers, kept


def simulate_3d(config: Simulation3DConfig | None = None, **overrides) -> Simulation3D:
    """Simulate the dynamics of a 3D movie (frames are rendered on demand).

    Parameters
    ----------
    config
        Simulation parameters; defaults to :class:`Simulation3DConfig()`.
    **overrides
        Field overrides applied on top of ``config``.
    """
    cfg = config or Simulation3DConfig()
    if overrides:
        cfg = Simulation3DConfig(**{**cfg.model_dump(), **overrides})
    rng = np.random.default_rng([cfg.seed, 31])
    T = cfg.n_frames
    dt = cfg.interval_min
    H, W, D = cfg.shape_yx[0] * cfg.pixel_size_um, cfg.shape_yx[1] * cfg.pixel_size_um, cfg.depth_um
    centers, radii = _place_cells_3d(cfg, rng)
    n = len(centers)
    u = rng.uniform(size=n)
    fates = np.where(
        u < cfg.p_apoptotic,
        col.APOPTOTIC,
        np.where(u < cfg.p_apoptotic + cfg.p_necroptotic, col.NECROPTOTIC, FATE_ALIVE),
    )
    K = 4
    tex_size = 256
    phase_sd = 0.06 * math.sqrt(dt / 2.0)
    cells, polar = [], []
    for i, (p, r) in enumerate(zip(centers, radii)):
        ks = np.arange(2, 2 + K)
        cell = _Cell(
            cell_id=i + 1,
            fate=str(fates[i]),
            start=0,
            stop=T,
            radius_um=float(r),
            harm_amp=rng.uniform(0.02, 0.09, K) / np.sqrt(ks - 1),
            harm_k=ks,
            tex_offset=tuple(int(v) for v in rng.integers(0, tex_size, 2)),
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
        # the 2D simulator's kinetics, drawn from the same fields (area_factor read as the
        # equivalent area's ratio: see the module docstring)
        _schedule_fate(cell, cfg, rng)
        if cell.fragments is not None:
            # apoptotic bodies spread in 3D: a z offset for each; and each body keeps the
            # share of the cell a 2D body has, read (as area_factor) in equivalent area:
            # a body of radius factor rf holds rf² of a 2D cell's area, so rf^(2/3) in 3D
            nf = len(cell.fragments)
            dzr = rng.uniform(-0.6, 0.6, nf)
            frag = cell.fragments.copy()
            frag[:, 2] = frag[:, 2] ** (2 / 3)
            cell.fragments = np.column_stack([dzr, frag])
        cell.center = np.full((T, 3), np.nan)
        cell.center[0] = p
        cells.append(cell)
        polar.append((rng.uniform(0.05, 0.15), rng.uniform(0, 2 * np.pi)))
    _move_cells_3d(cfg, rng, cells, H, W, D)
    M = cfg.n_immune if cfg.with_immune else 0
    pos = np.zeros((T, M, 3))
    direction = np.zeros((T, M, 3))
    target = np.zeros((T, M), np.int64)
    arrested = np.zeros((T, M), bool)
    shape = np.column_stack(
        [
            cfg.immune_radius_um * rng.uniform(1.1, 1.35, M),
            cfg.immune_radius_um * rng.uniform(0.8, 0.95, M),
        ]
    )
    if M:
        _move_immune_3d(cfg, rng, cells, pos, direction, target, arrested, H, W, D)
    rng_bg = np.random.default_rng([cfg.seed, 32])
    bg2d, _ = _illumination_maps(cfg, rng_bg)
    background = np.broadcast_to(bg2d, (cfg.n_z, *cfg.shape_yx)).astype(np.float32)
    if cfg.tissue_background > 0:
        # a smooth texture that changes with depth: two smooth fields mixed along z
        scale_px = cfg.tissue_scale_um / cfg.pixel_size_um
        f1 = _smooth_field(rng_bg, cfg.shape_yx, scale_px)
        f2 = _smooth_field(rng_bg, cfg.shape_yx, scale_px)
        w = np.cos(np.pi * np.arange(cfg.n_z) * cfg.z_step_um / (2 * cfg.tissue_scale_um))
        field3 = w[:, None, None] * f1 + np.sqrt(1 - w**2)[:, None, None] * f2
        background = background * (1 + cfg.tissue_background * field3).astype(np.float32)
        background = np.clip(background, 0.02, None)
    texture = np.clip(1 + cfg.texture * _texture(rng, tex_size, 3.0), 0.2, None)
    return Simulation3D(
        config=cfg,
        cells=cells,
        polar=np.array(polar).reshape(-1, 2),
        immune_pos=pos,
        immune_dir=direction,
        immune_target=target,
        immune_arrested=arrested,
        immune_shape=shape,
        texture_map=texture.astype(np.float32),
        background_map=np.ascontiguousarray(background),
    )


def _move_cells_3d(cfg, rng, cells: list[_Cell], H, W, D) -> None:
    """Random walk of the target cells with soft exclusion (fills ``center`` in place)."""
    T = cfg.n_frames
    step_sd = cfg.cell_speed_um_per_min * cfg.interval_min / math.sqrt(3)
    lo_hi = [(0.0, D), (0.0, H), (0.0, W)]
    for t in range(1, T):
        now = np.array([c.center[t - 1] for c in cells]).reshape(-1, 3)
        radius = np.array([c.radius_um * math.sqrt(c.area_factor[t]) for c in cells])
        for i, cell in enumerate(cells):
            prev = cell.center[t - 1]
            if not cell.moving[t]:
                cell.center[t] = prev
                continue
            prop = prev + rng.normal(0, step_sd, 3)
            prop = np.array([np.clip(v, lo, hi) for v, (lo, hi) in zip(prop, lo_hi)])
            others = np.delete(np.arange(len(cells)), i)
            gap = np.linalg.norm(now[others] - prop, axis=1) - radius[i] - radius[others]
            gap_prev = np.linalg.norm(now[others] - prev, axis=1) - radius[i] - radius[others]
            ok = not np.any((gap < 0.5) & (gap < gap_prev))
            cell.center[t] = prop if ok else prev
            now[i] = cell.center[t]


def _move_immune_3d(cfg, rng, cells, pos, direction, target, arrested, H, W, D) -> None:
    """Persistent random walk in 3D with recruitment to deaths (stronger to necroptotic)."""
    T, M = target.shape
    dt = cfg.interval_min
    speed = cfg.immune_speed_um_per_min * dt
    turn_sd = math.sqrt(dt / cfg.immune_persistence_min)
    p_recruit = {
        col.NECROPTOTIC: 1 - math.exp(-cfg.recruit_necroptotic_per_min * dt),
        col.APOPTOTIC: 1 - math.exp(-cfg.recruit_apoptotic_per_min * dt),
    }
    margin = cfg.immune_radius_um
    lo = np.array([margin, margin, margin])
    hi = np.array([D - margin, H - margin, W - margin])
    pos[0] = rng.uniform(lo, hi, (M, 3))
    heading = rng.normal(size=(M, 3))
    heading /= np.linalg.norm(heading, axis=1, keepdims=True)
    direction[0] = heading
    dwell_left = np.zeros(M, int)
    visited: list[set[int]] = [set() for _ in range(M)]
    deaths = [c for c in cells if c.fate in (col.APOPTOTIC, col.NECROPTOTIC)]
    by_id = {c.cell_id: c for c in deaths}
    apo_signal = cfg.frames(4.0)

    def death_frame(c: _Cell) -> int:
        return c.rupture if c.fate == col.NECROPTOTIC else c.onset + apo_signal

    for t in range(1, T):
        for m in range(M):
            p = pos[t - 1, m]
            tgt = int(target[t - 1, m])
            if tgt and dwell_left[m] <= 0 and arrested[t - 1, m]:
                visited[m].add(tgt)
                tgt = 0
            cur = by_id.get(tgt)
            if not tgt or cur.fate == col.APOPTOTIC:
                cands = [
                    (float(np.linalg.norm(c.center[t - 1] - p)), c)
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
            h = heading[m] + turn_sd * rng.normal(size=3)
            heading[m] = h / (np.linalg.norm(h) + 1e-12)
            step_len = speed * rng.uniform(0.6, 1.4)
            is_arrested = False
            if tgt:
                c = by_id[tgt]
                vec = c.center[t - 1] - p
                d = float(np.linalg.norm(vec))
                arrive = c.radius_um * math.sqrt(c.area_factor[t - 1]) + 0.8 * cfg.immune_radius_um
                if d <= arrive + 1.0:
                    is_arrested = True
                    dwell_left[m] -= 1
                    step_len = 0.1 * speed * rng.uniform(0, 1)
                else:
                    want = vec / max(d, 1e-9)
                    h = heading[m] + 2.3 * (want - heading[m])
                    heading[m] = h / (np.linalg.norm(h) + 1e-12)
                    heading[m] = want if np.dot(heading[m], want) < 0 else heading[m]
                    step_len = min(step_len, max(d - arrive, 0.0))
            new = p + step_len * heading[m]
            for k in range(3):  # reflect at the field's faces
                if new[k] < lo[k]:
                    new[k] = 2 * lo[k] - new[k]
                    heading[m, k] = -heading[m, k]
                elif new[k] > hi[k]:
                    new[k] = 2 * hi[k] - new[k]
                    heading[m, k] = -heading[m, k]
            pos[t, m] = np.clip(new, lo, hi)
            direction[t, m] = heading[m]
            target[t, m] = tgt
            arrested[t, m] = is_arrested
        _repel_3d(pos[t], 2.0 * cfg.immune_radius_um, lo, hi)


def _repel_3d(p: np.ndarray, min_dist: float, lo, hi, iterations: int = 6) -> None:
    """Push apart immune cells closer than ``min_dist`` (cells crowd, they do not overlap)."""
    for _ in range(iterations):
        d = p[:, None, :] - p[None, :, :]
        dist = np.linalg.norm(d, axis=-1)
        np.fill_diagonal(dist, np.inf)
        close = dist < min_dist
        if not close.any():
            return
        overlap = np.where(close, (min_dist - dist) / 2, 0.0)
        unit = d / np.maximum(dist, 1e-6)[..., None]
        p += (unit * overlap[..., None]).sum(axis=1)
        np.clip(p, lo, hi, out=p)


#: what :func:`random_config_3d` draws (uniformly): quantity -> (low, high)
RANDOM_3D: dict[str, tuple[float, float]] = {
    "pixel_size_um": (0.5, 0.8),
    "z_ratio": (2.0, 5.0),  # z step / pixel size
    "n_cells": (8, 12),
    "n_immune": (12, 20),
    "snr": (10.0, 25.0),
    "psf_sigma_um": (0.4, 0.7),
    "psf_axial_sigma_um": (1.0, 2.0),
    "depth_blur": (0.5, 1.5),
    "attenuation_um": (60.0, 150.0),
    "tissue_background": (0.0, 0.06),
    "immune_speed_um_per_min": (3.0, 6.0),
}


def random_config_3d(seed: int, **overrides) -> Simulation3DConfig:
    """A 3D movie's conditions drawn from :data:`RANDOM_3D` (z step 2-5x the pixel size,
    noise, PSFs, depth blur and attenuation, tissue background, immune speed) by ``seed``;
    the field keeps the defaults' size in pixels (``overrides`` change anything). Seeds
    0-99 are for development, seeds from 1000 on for scoring only."""
    rng = np.random.default_rng([seed, 1703])
    d = {k: rng.uniform(lo, hi) for k, (lo, hi) in RANDOM_3D.items()}
    px = float(d["pixel_size_um"])
    cfg = {
        "seed": seed,
        "pixel_size_um": round(px, 4),
        "z_step_um": round(float(d["z_ratio"]) * px, 4),
        "n_cells": int(round(d["n_cells"])),
        "n_immune": int(round(d["n_immune"])),
        **{
            k: round(float(d[k]), 4)
            for k in (
                "snr",
                "psf_sigma_um",
                "psf_axial_sigma_um",
                "depth_blur",
                "attenuation_um",
                "tissue_background",
                "immune_speed_um_per_min",
            )
        },
    }
    cfg.update(overrides)
    return Simulation3DConfig(**cfg)


def _movie_uuid(config: Simulation3DConfig) -> str:
    """The OME UUID of a simulated 3D movie, derived from its parameters."""
    import uuid as uuid_mod

    return str(uuid_mod.uuid5(uuid_mod.NAMESPACE_URL, "deathtrack3d:" + config.model_dump_json()))


def write_simulation_3d(
    sim: Simulation3D, out_dir: str | Path, *, name: str = "movie"
) -> dict[str, Path]:
    """Write a simulated 3D movie and its truth to ``out_dir``.

    ``<name>.ome.tif`` (T, C, Z, Y, X uint16, with pixel size, z step, interval and
    channel names), and in ``<name>_truth/``: ``events.csv``, ``cells.csv``,
    ``immune.csv``, ``lineage.csv``, ``recruitment.csv``, ``labels_cells.tif`` and
    ``labels_immune.tif`` (T, Z, Y, X) and ``simulation.toml``. Frames are streamed;
    the truth labels are rendered once into memory-mapped files on disk.
    """
    import tempfile

    import tomli_w

    from .io import write_labels, write_ome_tiff

    c = sim.config
    out = Path(out_dir)
    truth_dir = out / f"{name}_truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    T = c.n_frames
    shape = (T, c.n_z, *c.shape_yx)
    paths: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(dir=truth_dir, prefix=".labels-") as tmp:
        stores = tuple(
            np.lib.format.open_memmap(
                Path(tmp) / f"{pop}.npy", mode="w+", dtype=np.int32, shape=shape
            )
            for pop in ("cells", "immune")
        )
        for t in range(T):
            stores[0][t], stores[1][t] = sim.render_labels(t)
        sim._label_store = stores
        try:
            for k, pop in enumerate(("cells", "immune")):
                paths[f"labels_{pop}"] = write_labels(
                    truth_dir / f"labels_{pop}.tif",
                    (stores[k][t] for t in range(T)),
                    shape=shape,
                    dtype=np.int32,
                )
            truth = sim.truth()
        finally:
            sim._label_store = None
            del stores
    for key, df in truth.items():
        p = truth_dir / f"{key}.csv"
        df.to_csv(p, index=False)
        paths[key] = p
    paths["movie"] = write_ome_tiff(
        out / f"{name}.ome.tif",
        sim.iter_frames(),
        shape=sim.shape,
        dtype=np.uint16,
        channel_names=c.channel_names,
        pixel_size_um=c.pixel_size_um,
        interval_s=c.interval_s,
        z_step_um=c.z_step_um,
        uuid=_movie_uuid(c),
    )
    cfg_path = truth_dir / "simulation.toml"
    cfg_path.write_text(tomli_w.dumps(config_to_dict(c)), encoding="utf-8")
    paths["config"] = cfg_path
    return paths
