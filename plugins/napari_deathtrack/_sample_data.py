"""Sample data: the demo movie bundled with deathtrack (File > Open Sample > deathtrack)."""

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
            f"{DEMO_STACK}: the demo movie is missing (it ships with a source checkout of "
            "deathtrack); regenerate it with "
            "`deathtrack simulate sample_data --preset demo --seed 1 --name demo`"
        )
    return read_path(DEMO_STACK)
