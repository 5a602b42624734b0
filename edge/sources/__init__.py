"""Audio sources for the edge meter: files, live input, synthetic factory scenes.

Every source yields :class:`Chunk` objects (float64 samples of shape ``(n, channels)`` in
raw units, digital full scale ±1.0, plus ``gap_before``, the frames known to be missing
just before the chunk), has ``samplerate`` (Hz) and ``channels``, ``close()``, and is a
context manager. Problems a user can fix raise :class:`SourceError` with what to do.

``LiveSource`` imports sounddevice (PortAudio) only when it is created, so files and
synthetic scenes work on a machine without PortAudio.
"""

from importlib import import_module

from .chunk import Chunk, Source, SourceError

_LAZY = {"FileSource": "files", "LiveSource": "live", "input_devices": "live",
         "refresh_devices": "live", "PROFILES": "synthetic", "SyntheticScene": "synthetic"}


def __getattr__(name: str):
    """Import a source module only when it is used (scipy costs ~1 s to import; the
    ``tingbao`` command should start fast)."""
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "PROFILES",
    "Chunk",
    "FileSource",
    "LiveSource",
    "Source",
    "SourceError",
    "SyntheticScene",
    "input_devices",
    "refresh_devices",
]
