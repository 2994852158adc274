"""The pipeline parameters the analysis widget shows, read from the config models.

Defaults, bounds and help texts come from :class:`deathtrack.config.PipelineConfig`
(its pydantic fields), never from copies here, and the widget builds its
config with :func:`deathtrack.config.apply_overrides`, so the widget, the
TOML file and the CLI validate the same way.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

__all__ = ["MAIN_PARAMETERS", "Param", "config_value", "main_parameters"]

#: dotted keys of the parameters a microscopist checks before a run (the rest: a TOML file)
MAIN_PARAMETERS = (
    "segment.cells.noise_k",
    "segment.cells.min_area_um2",
    "segment.cells.max_area_um2",
    "segment.immune.noise_k",
    "track.cells.max_speed_um_per_min",
    "track.immune.max_speed_um_per_min",
    "death.uncertain_margin",
    "recruit.radius_um",  # shown when the installed deathtrack measures recruitment
    "segment.workers",
)

#: short labels for the form (the pydantic description is the tooltip)
LABELS = {
    "segment.cells.noise_k": "cells: threshold (noise SDs)",
    "segment.cells.min_area_um2": "cells: min area (µm²)",
    "segment.cells.max_area_um2": "cells: max area (µm²)",
    "segment.immune.noise_k": "immune: threshold (noise SDs)",
    "track.cells.max_speed_um_per_min": "cells: max speed (µm/min)",
    "track.immune.max_speed_um_per_min": "immune: max speed (µm/min)",
    "death.uncertain_margin": "uncertain margin (|p - 0.5| <)",
    "recruit.radius_um": "recruitment radius (µm)",
    "segment.workers": "threads",
}


@dataclass(frozen=True)
class Param:
    """One scalar config field: its key, type, bounds and help text."""

    key: str
    label: str
    kind: type  # float, int or bool
    description: str
    minimum: float | None
    maximum: float | None


def _field(model: type[BaseModel], key: str):
    cls: Any = model
    parts = key.split(".")
    for part in parts[:-1]:
        fields = getattr(cls, "model_fields", {})
        if part not in fields:
            return None
        cls = fields[part].annotation
    fields = getattr(cls, "model_fields", {})
    return fields.get(parts[-1])


def _bounds(info) -> tuple[float | None, float | None]:
    lo = hi = None
    for m in info.metadata:
        for name in ("ge", "gt"):
            if getattr(m, name, None) is not None:
                lo = float(getattr(m, name))
        for name in ("le", "lt"):
            if getattr(m, name, None) is not None:
                hi = float(getattr(m, name))
    return lo, hi


def main_parameters(model: type[BaseModel] | None = None) -> list[Param]:
    """The :data:`MAIN_PARAMETERS` the installed config model has, with their bounds."""
    from deathtrack.config import PipelineConfig

    model = model or PipelineConfig
    out = []
    for key in MAIN_PARAMETERS:
        info = _field(model, key)
        if info is None or info.annotation not in (float, int, bool):
            continue
        lo, hi = _bounds(info)
        out.append(
            Param(
                key=key,
                label=LABELS.get(key, key),
                kind=info.annotation,
                description=info.description or "",
                minimum=lo,
                maximum=hi,
            )
        )
    return out


def config_value(config: BaseModel, key: str) -> Any:
    """The value of a dotted key in a config object."""
    return functools.reduce(getattr, key.split("."), config)
