"""napari plugin of deathtrack: read stacks and results, run the analysis, review deaths.

Importing this package is cheap: napari, Qt and magicgui are imported only by
the widget modules, when napari builds the widgets. Contributions (see
``napari.yaml``): a reader (stacks and results folders), the demo movie as
sample data, the *Analyze* panel and the *Review deaths* panel.
"""

from __future__ import annotations

try:
    from deathtrack import __version__
except ImportError:  # pragma: no cover - the plugin ships with deathtrack
    __version__ = "unknown"

__all__ = ["__version__"]
