"""Config models: defaults, TOML round trip, overrides and error messages."""

from __future__ import annotations

import pytest

from deathtrack.config import (
    PipelineConfig,
    apply_overrides,
    config_to_dict,
    load_config,
    save_config,
)
from deathtrack.errors import ConfigError
from deathtrack.simulate import SimulationConfig


def test_defaults_round_trip_through_toml(tmp_path):
    cfg = apply_overrides(
        PipelineConfig(),
        ["input.pixel_size_um=0.65", "input.channels.cells=0", "input.channels.immune='CD8'"],
    )
    path = save_config(cfg, tmp_path / "exp.toml")
    again = load_config(path)
    assert again == cfg
    assert again.input.channels == {"cells": 0, "immune": "CD8"}


def test_simulation_config_round_trip(tmp_path):
    cfg = SimulationConfig(seed=7, shape_yx=(64, 80), n_frames=5)
    path = save_config(cfg, tmp_path / "sim.toml")
    assert load_config(path, SimulationConfig) == cfg


@pytest.mark.parametrize(
    "text, message",
    [
        # a misspelt key: named with its section
        (
            "[input]\npixle_size_um = 0.5\n",
            r"bad.toml: invalid configuration:\n  - unknown key 'input.pixle_size_um'",
        ),
        # a key of an earlier version: its new name
        (
            "[death]\ndye_min_rise = 20\n",
            r"'death.dye_min_rise': it is now 'death.dye_min_rise_sd'",
        ),
        # a misspelt section
        ("[segmnet]\nx = 1\n", "unknown key 'segmnet'"),
        # a bad value: the key, the rule and the value
        (
            "[input]\npixel_size_um = -0.5\n",
            r"input.pixel_size_um: Input should be greater than 0 \(got -0.5\)",
        ),
    ],
    ids=["unknown key", "renamed key", "unknown section", "bad value"],
)
def test_a_bad_config_file_names_the_key_and_what_to_do(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_bad_role_lists_allowed_roles():
    with pytest.raises(
        ConfigError,
        match="unknown channel role\\(s\\) 'nucleus'; "
        "allowed roles: cells, immune, dye, caspase, nuclei",
    ):
        apply_overrides(PipelineConfig(), ["input.channels.nucleus=1"])


def test_bad_axes():
    with pytest.raises(
        ConfigError, match="axes 'TCXY' must use each of the letters T, C, Z, Y, X at most once"
    ):
        apply_overrides(PipelineConfig(), ["input.axes=TCXY"])
    assert apply_overrides(PipelineConfig(), ["input.axes=tcyx"]).input.axes == "TCYX"


def test_oversize_factor_is_off_or_above_one():
    with pytest.raises(
        ConfigError,
        match=r"segment.cells.oversize_factor: oversize_factor must be 0 \(off\) or above 1 "
        r"\(times the median area\) \(got 0.8\)",
    ):
        apply_overrides(PipelineConfig(), ["segment.cells.oversize_factor=0.8"])
    assert (
        apply_overrides(
            PipelineConfig(), ["segment.cells.oversize_factor=0"]
        ).segment.cells.oversize_factor
        == 0
    )


def test_toml_syntax_error_gives_line(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[input]\npixel_size_um = = 3\n")
    with pytest.raises(ConfigError, match=r"broken.toml: not valid TOML: .*line 2"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="nope.toml: config file not found"):
        load_config(tmp_path / "nope.toml")


def test_override_syntax():
    with pytest.raises(ConfigError, match="must look like SECTION.KEY=VALUE"):
        apply_overrides(PipelineConfig(), ["input.pixel_size_um"])
    with pytest.raises(ConfigError, match="'pixel_size_um' is a value, not a section"):
        apply_overrides(PipelineConfig(), ["input.pixel_size_um.x=1"])


def test_overrides_do_not_mutate_and_parse_toml_values():
    base = PipelineConfig()
    new = apply_overrides(base, ["output.write_labels=false", "output.table_format=parquet"])
    assert base.output.write_labels is True
    assert new.output.write_labels is False and new.output.table_format == "parquet"
    assert "pixel_size_um" not in config_to_dict(base)["input"]  # None is left out of TOML
