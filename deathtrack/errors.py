"""Exceptions raised for user mistakes.

Every error a user can cause (a missing file, a wrong channel, a bad config
value) is a :class:`DeathtrackError`. Its message names the file, frame, key
or argument, the bad value, and what to do instead. The command line prints
the message without a traceback and exits with status 2; library callers can
catch the specific subclass, which also derives from the matching built-in
exception (``FileNotFoundError``, ``ValueError``, ``OSError``).
"""

from __future__ import annotations

__all__ = [
    "AxesError",
    "CalibrationError",
    "ChannelRoleError",
    "ConfigError",
    "DeathtrackError",
    "NoCellsError",
    "NoSignalError",
    "OutputError",
    "ResultsLockedError",
    "StackChangedError",
    "StackDataError",
    "StackNotFoundError",
    "StackReadError",
    "interrupt_behind",
]


class DeathtrackError(Exception):
    """Base class of errors caused by the user's input, config or data."""


class StackNotFoundError(DeathtrackError, FileNotFoundError):
    """The stack path does not exist."""


class StackReadError(DeathtrackError, ValueError):
    """The file exists but cannot be read as an image stack (not a TIFF, corrupt, truncated)."""


class AxesError(DeathtrackError, ValueError):
    """The stack's axes are unknown or ambiguous and cannot be mapped to (T, C, [Z], Y, X)."""


class ChannelRoleError(DeathtrackError, ValueError):
    """A channel role points at a channel that does not exist, or a required role is missing."""


class CalibrationError(DeathtrackError, ValueError):
    """Pixel size, frame interval or z step is missing, invalid or implausible where needed."""


class ConfigError(DeathtrackError, ValueError):
    """A config file or override has an unknown key or an invalid value."""


class StackDataError(DeathtrackError, ValueError):
    """The stack reads fine but its pixels cannot be analysed (see the subclasses)."""


class NoSignalError(StackDataError):
    """The target-cell channel holds no signal: constant, all zero, or no finite value."""


class NoCellsError(StackDataError):
    """Segmentation found no target cell in any frame."""


class StackChangedError(DeathtrackError, RuntimeError):
    """The stack's file changed while it was being analysed."""


class OutputError(DeathtrackError, OSError):
    """The results folder (or another output path) cannot be written."""


class ResultsLockedError(DeathtrackError, RuntimeError):
    """Another deathtrack run is writing into the same results folder."""


def interrupt_behind(err: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM behind ``err``, if there is one.

    An interrupt that lands while a compiled function (numba's dispatcher) calls back into
    Python comes back as ``SystemError: ... returned a result with an exception set``,
    caused by the interrupt: that is the user stopping the run, not a failed stack."""
    seen = 0
    while err is not None and seen < 10:
        if isinstance(err, KeyboardInterrupt):
            return err
        err, seen = err.__cause__, seen + 1
    return None
