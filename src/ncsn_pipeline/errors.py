"""Errors that several layers of the package raise or catch, kept in one low module that imports nothing else.

`CorruptedWeightsError` is raised by the pipeline's loader and caught by the commands; `HubError` is raised by the
Hub layer and caught by the pipeline's methods, the training loop and the commands. Keeping them here lets each
side import them without importing the other (see the import rule in the package docstring).
"""


class CorruptedWeightsError(ValueError, OSError):
    """A weight file exists but cannot be read (truncated, corrupted, or holding NaN/Inf)."""


class HubError(RuntimeError):
    """Publishing or downloading failed; the message says why and what to do. Nothing was half-written."""
