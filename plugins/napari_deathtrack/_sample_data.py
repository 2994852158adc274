"""Sample data: the demo movie that ships inside deathtrack (File > Open Sample).

The movie is package data of ``deathtrack`` (``deathtrack/sample_data/``), found
through :mod:`importlib.resources`, so a wheel install offers it as well as a
source checkout.
"""

from __future__ import annotations

from ._layers import LayerData

__all__ = ["demo_movie"]


def demo_movie() -> list[LayerData]:
    """The 40-frame, 3-channel demo movie (cells, immune, dye), opened by the plugin's reader."""
    from deathtrack.cli import DEMO_STACK
    from deathtrack.errors import StackNotFoundError

    from ._reader import read_path

    if not DEMO_STACK.exists():
        raise StackNotFoundError(
            f"{DEMO_STACK}: the demo movie is missing from the installed deathtrack package "
            "(package data); reinstall deathtrack, or remake it with "
            "`deathtrack simulate OUT --preset demo --seed 8 --name demo` (seed 8, as in "
            "its simulation.toml) and open OUT/demo.ome.tif"
        )
    return read_path(DEMO_STACK)
