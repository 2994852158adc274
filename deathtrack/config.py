"""Typed, validated configuration: one model per stage, composed into one pipeline config.

Every parameter has one home here. The command line, a TOML file and the
napari widget all build the same :class:`PipelineConfig` object. Unknown keys
are refused, and every validation error names the key, the bad value and what
is allowed.

Examples
--------
>>> from deathtrack.config import PipelineConfig, apply_overrides
>>> cfg = apply_overrides(PipelineConfig(), ["input.pixel_size_um=0.65"])
>>> cfg.input.pixel_size_um
0.65
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .columns import ROLES
from .errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

__all__ = [
    "DeathConfig",
    "DivisionConfig",
    "InputConfig",
    "OutputConfig",
    "PipelineConfig",
    "PopulationSegmentConfig",
    "PopulationTrackConfig",
    "RecruitConfig",
    "Section",
    "SegmentConfig",
    "TrackConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "frames_for",
    "load_config",
    "read_toml",
    "save_config",
]

M = TypeVar("M", bound=BaseModel)


AXES_RULE = (
    "must use each of the letters T, C, Z, Y, X at most once and include Y and then X, e.g. "
    "TCYX (an RGB movie, colour last: TYXC)"
)


def frames_for(minutes: float, interval_s: float, *, at_least: int = 1) -> int:
    """Whole frames spanning ``minutes`` at a frame interval of ``interval_s`` seconds, and
    no fewer than ``at_least``: every duration in the config is in minutes, so the same
    config means the same biology at any frame rate."""
    if not interval_s > 0:
        raise ValueError(f"`interval_s` must be > 0, got {interval_s}")
    return max(int(at_least), int(round(minutes * 60.0 / interval_s)))


def valid_axes(axes: str) -> bool:
    """Whether ``axes`` names stack axes deathtrack understands (see :data:`AXES_RULE`)."""
    a = axes.upper()
    return (
        not (set(a) - set("TCZYX"))
        and len(set(a)) == len(a)
        and {"Y", "X"} <= set(a)
        and a.index("Y") < a.index("X")
    )


#: hard bounds of a calibration value (even with ``input.force_calibration``): beyond
#: them lengths and areas in µm overflow or vanish in floating point
PIXEL_SIZE_HARD_UM = (1e-4, 1e4)
INTERVAL_HARD_S = (1e-3, 1e7)


class Section(BaseModel):
    """Base of every config section: unknown keys are refused, assignments validated."""

    # inf and nan are refused everywhere: no parameter means anything at infinity
    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, validate_default=True, allow_inf_nan=False
    )


class InputConfig(Section):
    """How to read a stack: channel roles and calibration overrides."""

    channels: dict[str, int | str] = Field(
        default_factory=dict,
        description=(
            "Channel role -> channel index or name, e.g. {cells = 0, immune = 'CD8', dye = 2}. "
            "Roles: " + ", ".join(ROLES) + ". Roles not given are taken from channel names "
            "that equal the role."
        ),
    )
    pixel_size_um: float | None = Field(
        None,
        gt=0,
        le=PIXEL_SIZE_HARD_UM[1],
        description="Pixel size in µm; overrides the file's metadata (X and Y).",
    )
    interval_s: float | None = Field(
        None,
        gt=0,
        le=INTERVAL_HARD_S[1],
        description="Frame interval in seconds; overrides the file's metadata.",
    )
    z_step_um: float | None = Field(
        None,
        gt=0,
        le=PIXEL_SIZE_HARD_UM[1],
        description="Z step in µm for 3D stacks; overrides the file's metadata.",
    )
    force_calibration: bool = Field(
        False,
        description="Analyse a stack whose pixel size lies outside 0.01-50 µm or whose frame "
        "interval lies outside 0.1 s - 1 day (refused otherwise: such values are nearly "
        "always a metadata or unit mistake). The CLI flag is --force-calibration.",
    )
    axes: str | None = Field(
        None,
        description="Axes of the stored array (e.g. 'TCYX') when the file's metadata "
        "does not say; letters from T, C, Z, Y, X.",
    )

    @field_validator("channels")
    @classmethod
    def _known_roles(cls, value: dict[str, int | str]) -> dict[str, int | str]:
        unknown = sorted(set(value) - set(ROLES))
        if unknown:
            raise ValueError(
                f"unknown channel role(s) {', '.join(map(repr, unknown))}; "
                f"allowed roles: {', '.join(ROLES)}"
            )
        for role, ch in value.items():
            if isinstance(ch, int) and ch < 0:
                raise ValueError(f"channel index for role {role!r} must be >= 0, got {ch}")
        return value

    @field_validator("axes")
    @classmethod
    def _axes_letters(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not valid_axes(value):
            raise ValueError(f"axes {value!r} {AXES_RULE}")
        return value.upper()


class PopulationSegmentConfig(Section):
    """Segmentation of one population (target cells or immune cells) from its channel."""

    method: Literal["threshold", "labels"] = Field(
        "threshold",
        description="'threshold': the classical default (background correction, smoothing, "
        "noise-based threshold, seeded watershed). 'labels': read label stacks made by another "
        "tool (Cellpose, StarDist, ...) from labels_path.",
    )
    labels_path: str | None = Field(
        None,
        description="With method = 'labels': a label TIFF (T, Y, X) or a folder of per-frame "
        "label TIFFs (Cell Tracking Challenge layout).",
    )
    smooth_sigma_um: float = Field(
        0.8,
        ge=0,
        le=100,
        description="Gaussian denoising sigma (µm) of the image objects are found on (never "
        "less than a pixel: with coarser pixels, one pixel).",
    )
    edge_sigma_um: float = Field(
        0.4,
        ge=0,
        le=100,
        description="Gaussian sigma (µm) of the image object edges are placed on: less than "
        "smooth_sigma_um, so small objects (apoptotic bodies) keep their true size.",
    )
    background_radius_um: float = Field(
        25.0,
        ge=0,
        le=1000,
        description="Scale of the background removed (µm); 0 keeps the background.",
    )
    background_envelope: bool = Field(
        False,
        description="Never put the background below its lower envelope over 2 × "
        "background_radius_um: a patch of brighter background wider than that (uneven "
        "light, background texture) is background, not objects. For small, separate objects: "
        "on for immune cells (without it, bright textured background became 127-201 objects "
        "a frame for 6-22 immune cells on uneven_light development seeds 12, 41, 51); off for "
        "target cells, whose clumps in a dense field are wider (cells F1 of single frames "
        "of dense development seeds 3 and 5: 0.734 without, 0.700 with it).",
    )
    threshold: Literal["noise", "otsu", "li", "triangle"] = Field(
        "noise",
        description="'noise': background + noise_k × noise SD, measured in each frame (keeps "
        "faint ghosts, robust to photobleaching); or a histogram method per frame.",
    )
    noise_k: float = Field(
        6.5,
        gt=0,
        le=1000,
        description="Threshold in noise SDs above background (6.5: chosen on development "
        "seeds 1-2 of the simulator's families, against 5 and 8; scoring seeds never seen).",
    )
    edge_fraction: float = Field(
        0.35,
        ge=0,
        lt=1,
        description="Object edges where the signal falls to this fraction of the object's own "
        "plateau above background (0.5 = half maximum, the edge of a blurred uniform object; "
        "lower suits cells that thin out towards their edge); 0 uses the detection threshold.",
    )
    edge_fraction_3d: float = Field(
        0.5,
        ge=0,
        lt=1,
        description="edge_fraction for z-stacks (3D runs): half of the object's own plateau, "
        "the edge of a blurred object, since the axial blur is several times the lateral one "
        "(0.5: chosen on the 3D simulator's development seeds 0-5 against 0.35; scoring seeds "
        "never seen); 0 uses the detection threshold.",
    )
    min_area_um2: float = Field(
        30.0,
        ge=0,
        le=1e6,
        description="Smallest object kept, µm² (a 6 µm disc; debris is smaller; apoptotic "
        "bodies count together, as the cluster they form).",
    )
    max_area_um2: float = Field(5000.0, gt=0, le=1e8, description="Largest object kept, µm².")
    confluent_fraction: float = Field(
        0.75,
        gt=0,
        le=1,
        description="A frame whose foreground covers more than this fraction is confluent: "
        "there, the sheet of cells is cut at the seams between them (confluent_seam_um); "
        "1 turns this off.",
    )
    confluent_window_um: float = Field(
        20.0,
        gt=0,
        le=1000,
        description="Side of the window (µm, about a cell across) whose mean a confluent "
        "cell body must exceed; used only when confluent_seam_um is 0.",
    )
    confluent_seam_um: float = Field(
        2.5,
        ge=0,
        le=100,
        description="In a confluent frame, the sheet is cut at its seams: dark lines narrower "
        "than this (µm) that a grey closing fills; a cell's dim centre or nucleus is wider "
        "and stays. 0: keep only what is brighter than its surroundings "
        "(confluent_window_um) instead.",
    )
    packed_fraction: float = Field(
        1.0,
        gt=0,
        le=1,
        description="A confluent frame whose foreground covers more than this fraction is "
        "taken as packed edge to edge: its seams, too faint for the grey closing, are found "
        "as dark lines by the Hessian at 0.4 x confluent_seam_um (a line detector: along "
        "their length). 1 (the default) turns this off. Try 0.84 for cells packed edge to "
        "edge at pixels of 0.6 µm or more: on such development seeds of the dense family it "
        "raised cells F1 from 0.59-0.80 to 0.76-0.88 (seeds 19, 21, 26 and 33; 256 px, 40 "
        "frames), but it also cuts cells along their texture where that is as fine as a "
        "seam (seed 32, 0.56 µm per pixel: 0.76 to 0.69), "
        "and on the dense scoring seed at 0.46 µm per pixel it lowered cells F1 from 0.718 "
        "to 0.623 (benchmarks/results/generalization.md, point packed_lines).",
    )
    confluent_grow_um: float = Field(
        2.0,
        ge=0,
        le=100,
        description="In a confluent frame, each cell body found grows back into the covered "
        "field by at most this much (µm), never into a neighbour and only where the signal "
        "stands above the body's own edge level (edge_fraction): the cut at the seams also "
        "takes the bodies' dimmer parts. 0 turns it off.",
    )
    split_touching: bool = Field(True, description="Split touching objects by watershed.")
    oversize_factor: float = Field(
        1.6,
        ge=0,
        le=100,
        description="An object of more than this times the frame's median object area, not "
        "round (axes ratio >= 1.3 or solidity < 0.85, blebs aside) and as bright as live "
        "cells is split into round(area / median) cells (k-means groups of its pixels), if "
        "the lines between the groups run along a seam dimmer than the cells (<= 0.85 x): "
        "cells merged without a neck, their seam too faint for the watershed. A swollen or "
        "ruptured dying cell (round, or dim) and one large nucleus (no seam) stay whole. 0 "
        "turns it off. (1.6: chosen on development seeds of the dense family, against 1.5, "
        "1.7, 1.8 and 2.2.)",
    )
    seed_method: Literal["prominence", "spacing", "prominence+size"] = Field(
        "prominence",
        description="How touching objects are seeded: 'prominence' (a cell's middle stands "
        "out above the neck it shares with its neighbour; suits cells), 'spacing' (maxima "
        "at least min_distance_um apart; suits small crowded cells) or 'prominence+size' "
        "(prominence, then objects of more than 1.8 x the frame's typical area split by "
        "spacing at their own size: cells of one size swarming without necks).",
    )
    min_distance_um: float | Literal["auto"] = Field(
        8.0,
        description="With seed_method = 'spacing': smallest distance between the centres of "
        "touching objects, µm; 'auto': 1.2 x the radius of a typical object of the frame "
        "(the lower quartile of the objects' sizes: most are single cells), so T cells and "
        "macrophages are each split at their own size.",
    )

    @field_validator("oversize_factor")
    @classmethod
    def _oversize_above_one(cls, value):
        if value != 0 and value <= 1:
            raise ValueError("oversize_factor must be 0 (off) or above 1 (times the median area)")
        return value

    @field_validator("min_distance_um")
    @classmethod
    def _positive_distance(cls, value):
        if value != "auto" and not 0 < value <= 1000:
            raise ValueError(f"min_distance_um must be 'auto' or in (0, 1000] µm, got {value}")
        return value

    seed_prominence_um: float = Field(
        0.35,
        gt=0,
        le=1000,
        description="How much a cell's middle must stand out (distance to its edge, µm, "
        "weighted by brightness) above the neck it shares with a touching cell to be split "
        "from it; larger merges more.",
    )
    seed_noise_k: float = Field(
        2.0,
        ge=0,
        le=1000,
        description="A seed must also stand this many noise SDs of the landscape above its "
        "neck (the frame's pixel noise carried through the brightness weighting, per object), "
        "so noisy frames are not split at random; 0 turns this off.",
    )
    dim_objects: bool = Field(
        False,
        description="Also look for large dim objects anywhere in the frame, at a coarser "
        "scale. Off by default: in uneven background and in the glow of bright cells it "
        "draws objects where there are none. Faint cells (ghosts of ruptured cells, swollen "
        "cells whose reporter diluted) are found where a cell just was (carry_objects).",
    )
    dim_smooth_sigma_um: float = Field(
        3.0, ge=0, le=100, description="Smoothing (µm) of the search for dim objects."
    )
    seed_shape_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Weight of shape (distance to the edge) against signal (brightness) in "
        "the landscape whose maxima seed touching cells.",
    )
    merge_fragments: bool = Field(
        True,
        description="Merge clusters of small pieces (apoptotic bodies, blebs) into one object, "
        "so fragments stay with the cell they came from.",
    )
    fragment_area_um2: float = Field(
        60.0, ge=0, le=1e6, description="Pieces smaller than this (µm²) may be merged as fragments."
    )
    fragment_gap_um: float = Field(
        10.0,
        ge=0,
        le=1000,
        description="Fragments closer than this (µm) to each other belong together.",
    )
    bleb_max_fraction: float = Field(
        0.1,
        ge=0,
        le=1e6,
        description="A cluster of pieces joins the one large object it touches (blebs of that "
        "cell) only when its area is below this fraction of that object's; a larger cluster "
        "(the apoptotic bodies of a dead cell beside a live neighbour) stays an object of its "
        "own.",
    )

    regrow_faint: bool = Field(
        True,
        description="Outline faint objects (a swollen cell whose reporter has diluted, a "
        "ruptured cell's ghost) again at a coarser scale, where they stand out of the noise "
        "as a whole, not only where their texture peaks.",
    )
    split_merged: bool = Field(
        True,
        description="Split an object that covers two cells which were separate in the "
        "previous frame (cells do not fuse), along the seam between where each was; only "
        "when the object has a neck or a dimmer seam (see split_merged_seen).",
    )
    split_merged_seen: bool = Field(
        True,
        description="With split_merged: also split, without a neck or seam, two cells "
        "that were each their own object for the last 3 frames in a row, each at least "
        "0.6 times the typical object's area, now merged into one object at least 1.5 "
        "times that area: cells pressed together without a visible seam (packed fields, "
        "daughter cells). A cell the segmentation cut in two for fewer frames is let "
        "whole again.",
    )
    split_merged_seen_later: bool = Field(
        True,
        description="With split_merged_seen: once every frame is mended, mend them again "
        "from the last frame back, so that two cells seen apart in later frames are split "
        "in the earlier frames where they were merged without a seam (cells pressed "
        "together from the first frame on, that move apart later). Not an object more "
        "convex than one cell usually is (solidity above 0.93): one large cell that the "
        "segmentation cut in two later is not cut earlier too.",
    )
    carry_objects: bool = Field(
        True,
        description="Where a cell of the previous frame finds no object (and is not at the "
        "image edge), look for it there at a lower threshold relative to its surroundings: "
        "the faint ghost of a ruptured cell, or a cell missed in one frame. Such objects "
        "are marked `carried` in tracks.csv.",
    )
    carry_divided: bool = Field(
        False,
        description="Also carry a cell that divided. By default a cell is not looked for "
        "as a faded cell when two new objects, each 0.2 to 1 times its area, lie on either "
        "side of where it was, 0.6 to 2 of its radii from its centre: its daughters. "
        "Between them the search would find the dark gap, and the ghost carried there "
        "would be taken for a death (seen on HeLa nuclei at 30 minutes a frame).",
    )
    carry_reach_um: float = Field(
        2.0,
        ge=0,
        le=100,
        description="How far beyond its previous outline (µm) a carried cell is looked for.",
    )
    carry_smooth_um: float = Field(
        1.0, gt=0, le=100, description="Smoothing (µm) of the search for a carried cell."
    )
    carry_k: float = Field(
        2.5,
        gt=0,
        le=1000,
        description="A carried cell's pixels stand this many noise SDs (of the smoothed "
        "image) above the median of its own surroundings (2.5, against 3 and 4: chosen on "
        "development seeds 1-4 of coarse_slow and low_snr, where fading ghosts were lost "
        "(cells F1 up to +0.04), and checked on seeds 1-2 of the other families, which did "
        "not change by more than 0.003; scoring seeds never seen).",
    )
    carry_dye_k: float = Field(
        3.0,
        ge=0,
        le=1000,
        description="Target cells, in a movie with a dead-cell dye: a cell that vanished "
        "(no object where it was but neighbours that lie mostly where they were, and no "
        "faded ghost found in its own channel) is kept "
        "as its ruptured ghost, its last outline, when the dye there stands out: the "
        "90th percentile of the dye inside the outline (the stained nucleus, a quarter "
        "of the cell across) this many noise SDs above the median of a 4 µm ring around "
        "it. A swelling necroptotic cell in a confluent field is otherwise lost a frame "
        "or more before it ruptures, and its death with it. 0: off. (Made for dense "
        "development seeds 3, 5, 6-15, where such cells were the largest class of missed "
        "deaths; 3 SDs was the only value tried; checked on seeds 1-2 of every other "
        "family and 1-4 of coarse_slow and low_snr; scoring seeds never seen.)",
    )

    @model_validator(mode="after")
    def _check(self) -> PopulationSegmentConfig:
        if self.method == "labels" and not self.labels_path:
            raise ValueError("method = 'labels' needs labels_path (a label TIFF or folder)")
        if self.max_area_um2 <= self.min_area_um2:
            raise ValueError(
                f"max_area_um2 ({self.max_area_um2}) must be larger than "
                f"min_area_um2 ({self.min_area_um2})"
            )
        return self


def _immune_segment_defaults() -> PopulationSegmentConfig:
    return PopulationSegmentConfig(
        dim_objects=False,
        carry_objects=False,
        split_merged=False,
        edge_fraction=0.4,
        min_area_um2=8.0,
        max_area_um2=5000.0,
        seed_method="prominence+size",
        min_distance_um="auto",
        # immune cells of one size swarming are split by prominence+size, at their spacing
        oversize_factor=0.0,
        merge_fragments=False,
        background_radius_um=15.0,
        background_envelope=True,
        # immune cells are small and bright: the lower threshold keeps dim, spread ones
        noise_k=5.0,
    )


class SegmentConfig(Section):
    """Segmentation, one subsection per population."""

    cells: PopulationSegmentConfig = Field(default_factory=PopulationSegmentConfig)
    immune: PopulationSegmentConfig = Field(default_factory=_immune_segment_defaults)
    unmix: bool = Field(
        True,
        description="Estimate in each frame how much of the target cells' channel shows in "
        "the immune channel and the other way round (crosstalk, bleed-through), from where "
        "the other population's cells are, and subtract it before segmenting.",
    )
    workers: int = Field(
        2,
        ge=1,
        le=256,
        description="Frames segmented in parallel: by the run's own process and workers - 1 "
        "helper processes (or threads; results do not depend on it, memory grows with it by "
        "one process). Set it to the number of cores; 1 for no parallelism.",
    )
    parallel: Literal["auto", "processes", "threads"] = Field(
        "auto",
        description="How frames are segmented in parallel: 'threads' (one process; about a "
        "fifth of the work holds Python's lock, so two threads keep two cores busy) or "
        "'processes' (this process and workers - 1 helper processes of ~300 MB each, which "
        "scale to more cores). 'auto': threads with up to 2 workers or for frames under "
        "512x512 pixels; processes with more workers, for z-stacks of 512x512 voxels and "
        "more, and for a run started from another thread (napari). A Dask worker process "
        "always uses threads.",
    )


class PopulationTrackConfig(Section):
    """Linking of one population over frames (trackpy)."""

    max_speed_um_per_min: float = Field(
        3.0,
        gt=0,
        le=1e4,
        description="Fastest plausible movement, µm/min; with the frame interval "
        "it sets trackpy's search range.",
    )
    min_search_um: float = Field(
        4.0, gt=0, le=1e4, description="Smallest search range in µm (segmentation jitter)."
    )
    max_gap_min: float = Field(
        4.0,
        ge=0,
        le=1e5,
        description="An object may be missed for up to this long (minutes; whole frames) and "
        "still keep its track.",
    )
    min_duration_min: float = Field(
        0.0,
        ge=0,
        le=1e6,
        description="Drop tracks that last less than this (minutes); 0 keeps all.",
    )


class DivisionConfig(Section):
    """Detection of divisions: a parent track ends, two daughters start next to it."""

    enabled: bool = Field(True, description="Look for divisions among target cells.")
    max_distance_um: float = Field(
        20.0, gt=0, le=1e4, description="Largest distance from the parent to a daughter, µm."
    )
    area_ratio: tuple[float, float] = Field(
        (0.2, 0.8), description="Daughter area as a fraction of the parent's last area."
    )
    min_daughter_area_um2: float = Field(
        50.0,
        ge=0,
        le=1e6,
        description="Smallest daughter, µm²: apoptotic bodies splitting into groups are smaller "
        "than a daughter cell and must not pass for a division.",
    )
    min_daughter_solidity: float = Field(
        0.85,
        ge=0,
        le=1,
        description="Daughters are round and smooth right after division; a group of apoptotic "
        "bodies is not (lower solidity).",
    )
    min_daughter_reporter: float = Field(
        0.5,
        ge=0,
        le=100,
        description="A daughter keeps at least this fraction of the parent's reporter signal "
        "(above background); the pieces of a ruptured cell's ghost have lost most of it and "
        "must not pass for a division.",
    )


class TrackConfig(Section):
    """Tracking, one subsection per population, and division detection."""

    cells: PopulationTrackConfig = Field(default_factory=PopulationTrackConfig)
    immune: PopulationTrackConfig = Field(
        default_factory=lambda: PopulationTrackConfig(
            max_speed_um_per_min=8.0, max_gap_min=2.0, min_search_um=5.0
        )
    )
    divisions: DivisionConfig = Field(default_factory=DivisionConfig)


class DeathConfig(Section):
    """Death detection and the apoptotic / necroptotic call."""

    min_track_min: float = Field(
        12.0,
        gt=0,
        le=1e6,
        description="Tracks shorter than this (minutes; and than 4 frames) are not examined.",
    )
    baseline_min: float = Field(
        10.0,
        gt=0,
        le=1e5,
        description="The start of a track that sets its baseline (minutes; at least 2 frames).",
    )
    shrink_fraction: float = Field(
        0.85,
        gt=0,
        lt=1,
        description="Apoptosis: area at or below this fraction of the baseline (DESIGN.md: "
        ">= 15 % below).",
    )
    sustain_min: float = Field(
        6.0,
        gt=0,
        le=1e5,
        description="Shrinkage must last this long (minutes; at least 2 frames, or to the end "
        "of the track).",
    )
    rupture_drop: float = Field(
        0.4,
        gt=0,
        lt=1,
        description="Necroptotic rupture: the reporter falls by at least this fraction within "
        "rupture_window_min and stays down.",
    )
    rupture_window_min: float = Field(
        6.0,
        gt=0,
        le=1e5,
        description="Rupture: the reporter is compared with its highest level this long "
        "(minutes; at least 1 frame) before, and must stay down as long after.",
    )
    dye_early_min: float = Field(
        10.0,
        ge=0,
        le=1e5,
        description="Dye uptake within this long (minutes; or the next frame) of the death is "
        "early (necroptotic rupture); later is late (secondary necrosis after apoptosis).",
    )
    onset_tolerance: float = Field(
        0.05,
        gt=0,
        le=10,
        description="Onset: first frame whose area differs from baseline by more.",
    )
    dye_min_rise_sd: float = Field(
        1.0,
        ge=0,
        le=1e6,
        description="Smallest dye rise counted as uptake, in units of the dye channel's pixel "
        "noise in cells (the median over cells of the dye's standard deviation within each "
        "cell), so the same in any camera's units: 8-bit, 16-bit or float scaled to 0-1 "
        "(1, against 1.5, 2 and 3: chosen on development seeds 1-4 of coarse_slow and "
        "low_snr and 1-2 of the other families, where it found the dye time of 93 % of the "
        "matched deaths that took up the dye, against 83 % with the former 20 raw counts, "
        "with the same deaths called; scoring seeds never seen).",
    )
    shrink_min_concentration: float = Field(
        1.15,
        ge=1,
        le=100,
        description="Shrinkage is called apoptosis only with a second sign of it: the "
        "reporter concentrated (mean above baseline by this factor, at its highest from "
        "shortly before the death to sustain_min after it), the cell broke into fragments, "
        "or the dye came. A cell shrunk to shrink_fraction of its area with all its "
        "reporter is 1 / 0.85 = 1.18 times as concentrated; a live cell whose outline the "
        "segmentation trims (a neighbour pressing, a seam drawn elsewhere) keeps most of "
        "its dimmer rim outside, and less. 1 turns this off.",
    )
    shrink_min_fragments: int = Field(
        3,
        ge=2,
        le=1000,
        description="Fragments count as the second sign of apoptosis (see "
        "shrink_min_concentration) when the cell broke into at least this many pieces. "
        "Two pieces are as often a live cell's outline cut in two, or a neighbour's edge "
        "taken in, as a cell falling into bodies.",
    )
    border_min_concentration: float = Field(
        1.08,
        ge=1,
        le=100,
        description="A cell touching the image edge is called apoptotic only if its reporter "
        "also concentrated (mean above baseline by this factor): drifting across the edge "
        "changes the visible area, not the concentration.",
    )
    division_guard_min: float = Field(
        8.0,
        ge=0,
        le=1e5,
        description="Changes in a dividing cell's last minutes (and frame) are not deaths.",
    )
    division_area_ratio: float = Field(
        0.75,
        gt=0,
        le=1,
        description="A division the tracker missed: in one frame the area falls to at most "
        "this fraction of the frame before...",
    )
    division_jump_fraction: float = Field(
        0.3,
        ge=0,
        le=100,
        description="...and the centroid jumps by more than this fraction of the cell's "
        "radius (the track went on with one daughter). Such a shrinkage is not apoptosis.",
    )
    dye_onsets: bool = Field(
        True,
        description="Also call a death where the dye shows one and no track does: a "
        "dye-positive spot of a cell's size (onset_min_cell_fraction) appearing where there "
        "was no dye in the 8 minutes before and staying 6 minutes (sustain_min). A "
        "necroptotic cell takes up the dye all over at once even when the segmentation "
        "merged it into a neighbour or cut it into pieces as it swelled. Such a call has no "
        "track_id unless a track ended there shortly before.",
    )
    onset_min_cell_fraction: float = Field(
        0.2,
        gt=0,
        le=100,
        description="A dye onset is a death only when its spot (its area at half its "
        "height) covers at least this fraction of the median cell's area: an apoptotic "
        "cell's bodies take up the dye later, each a small spot; a necroptotic cell's "
        "nucleus (or the whole cell) at once. 0.2, against 0.15 and 0.25 (and the area "
        "above the detection threshold): chosen on development seeds (dense 3, 5, 6-15; "
        "coarse_slow and low_snr 1-4; the other families 1-2), where it recovered 28 "
        "missed deaths with no false call added (0.15: 33 and 2 false; 0.25: 23 and 0); "
        "scoring seeds never seen.",
    )
    onset_min_sd: float = Field(
        8.0,
        gt=0,
        le=1e6,
        description="A dye spot is brighter than this many noise SDs of the dye channel "
        "(smoothed over 1 µm; the SD from the frame's median absolute deviation).",
    )
    uncertain_margin: float = Field(
        0.15, ge=0, lt=0.5, description="Calls with |p_necroptotic - 0.5| below this are uncertain."
    )
    classifier: str | None = Field(
        None,
        description="A model trained on reviewed events (deathtrack train ... --out MODEL.json); "
        "when given it sets p_necroptotic instead of the built-in score.",
    )


#: largest number of bootstrap resamples or label permutations: 1e5 gives CIs and p-values
#: to 1e-5 in seconds; more costs minutes to hours and memory, with nothing to gain
MAX_RESAMPLES = 100_000


class RecruitConfig(Section):
    """Immune-cell recruitment around each death, and its comparison with chance."""

    radius_um: float = Field(
        30.0,
        gt=0,
        le=10_000,
        description="Immune cells whose centroid is within R µm of the event count.",
    )
    contact_tolerance_um: float = Field(
        1.0,
        ge=0,
        le=100,
        description="A contact: an immune mask touching the dying cell's mask dilated "
        "by this many µm.",
    )
    pre_min: float = Field(
        20.0,
        ge=0,
        le=1e5,
        description="Minutes before the death frame in the curve (whole frames).",
    )
    post_min: float = Field(
        40.0,
        ge=0,
        le=1e5,
        description="Minutes after the death frame in the curve (whole frames).",
    )
    n_controls: int = Field(
        20,
        ge=1,
        le=1000,
        description="Live target cells (or random places) per event whose counts at "
        "the same frames give the chance level.",
    )
    control_min_distance_um: float = Field(
        60.0, ge=0, le=10_000, description="Controls lie at least this far from every event."
    )
    approach_min: float = Field(
        20.0,
        gt=0,
        le=1e5,
        description="Minutes (at least 2 frames) before an immune cell's arrival used for its "
        "approach speed, chemotactic index and forward migration index.",
    )
    arrest_speed_um_per_min: float = Field(
        2.0,
        gt=0,
        le=1e4,
        description="Slower than this counts as arrested (celltrackR's arrest "
        "coefficient threshold).",
    )
    n_bootstrap: int = Field(
        2000, ge=100, le=MAX_RESAMPLES, description="Bootstrap resamples for 95 % CIs."
    )
    n_permutations: int = Field(
        5000, ge=100, le=MAX_RESAMPLES, description="Label permutations for p-values."
    )
    seed: int = Field(
        0, ge=0, le=2**63 - 1, description="Seed of controls, bootstraps and permutations."
    )


class OutputConfig(Section):
    """What the outputs folder holds."""

    table_format: Literal["csv", "parquet"] = Field(
        "csv", description="Format of the tables (tracks, events, recruitment)."
    )
    write_labels: bool = Field(True, description="Write labels_cells.tif and labels_immune.tif.")
    write_trackmate: bool = Field(
        True,
        description="Write tracks.xml, the tracks of both populations as a TrackMate file "
        "(Fiji: Plugins > Tracking > Load a TrackMate file).",
    )


class PipelineConfig(Section):
    """The whole pipeline's parameters, one section per stage."""

    input: InputConfig = Field(default_factory=InputConfig)
    segment: SegmentConfig = Field(default_factory=SegmentConfig)
    track: TrackConfig = Field(default_factory=TrackConfig)
    death: DeathConfig = Field(default_factory=DeathConfig)
    recruit: RecruitConfig = Field(default_factory=RecruitConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)


#: keys of earlier versions -> what to write instead (named in the error a config file
#: that still has them gets)
RENAMED_KEYS = {
    "death.dye_min_rise": "it is now 'death.dye_min_rise_sd', in units of the dye's pixel "
    "noise within cells instead of raw intensity (default 1)",
}


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            hint = RENAMED_KEYS.get(key, "check the spelling; see `deathtrack config`")
            lines.append(f"  - unknown key '{key}': {hint}")
            continue
        got = e.get("input")
        got_txt = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  - {key}: {msg}{got_txt}")
    return "\n".join(lines)


def config_from_dict(
    data: Mapping[str, Any], model: type[M] = PipelineConfig, *, source: str = "config"
) -> M:  # type: ignore[assignment]
    """Validate a nested mapping into ``model``; raise :class:`ConfigError` naming each bad key."""
    try:
        return model.model_validate(dict(data))
    except ValidationError as err:
        raise ConfigError(_format_validation_error(err, source)) from None


def config_to_dict(config: BaseModel) -> dict[str, Any]:
    """Plain nested dict of ``config`` (``None`` values dropped, as TOML has no null)."""
    return config.model_dump(mode="json", exclude_none=True)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict; :class:`ConfigError` names the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text (UTF-8 TOML) file") from None


def load_config(path: str | Path, model: type[M] = PipelineConfig) -> M:  # type: ignore[assignment]
    """Load and validate a TOML config file.

    Raises
    ------
    ConfigError
        When the file is missing, is not valid TOML (the message gives the line),
        or has unknown keys or invalid values (the message names each key).
    """
    return config_from_dict(read_toml(path), model, source=str(path))


def save_config(config: BaseModel, path: str | Path) -> Path:
    """Write ``config`` as TOML; :func:`load_config` reads it back to an equal object."""
    import tomli_w

    path = Path(path)
    path.write_text(tomli_w.dumps(config_to_dict(config)), encoding="utf-8")
    return path


def _parse_value(text: str) -> Any:
    """Parse an override value as a TOML value; bare words stay strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(config: M, overrides: Iterable[str] | Mapping[str, Any]) -> M:
    """Return a copy of ``config`` with dotted-key overrides applied and validated.

    Parameters
    ----------
    config
        The config to start from; it is not modified.
    overrides
        ``"section.key=value"`` strings (values parsed as TOML: ``0.65``,
        ``true``, ``'text'``, ``[1, 2]``; a bare word is a string) or a mapping
        from dotted key to value.
    """
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        items = []
        for item in overrides:
            key, sep, value = item.partition("=")
            if not sep or not key.strip():
                raise ConfigError(
                    f"override {item!r} must look like SECTION.KEY=VALUE, "
                    "e.g. input.pixel_size_um=0.65"
                )
            items.append((key.strip(), _parse_value(value.strip())))
    data = config.model_dump(mode="json")
    for key, value in items:
        parts = key.split(".")
        node = data
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override '{key}': '{part}' is a value, not a section")
            node = child
        node[parts[-1]] = value
    return config_from_dict(data, type(config), source="override")
