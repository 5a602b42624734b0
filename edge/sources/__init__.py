"""Audio sources for the edge meter: files, live input, synthetic factory scenes.

Every source yields :class:`Chunk` objects (float64 samples of shape ``(n, channels)`` in
raw units, digital full scale ±1.0, plus ``gap_before``, the frames known to be missing
just before the chunk), has ``samplerate`` (Hz) and ``channels``, ``close()``, and is a
context manager. Problems a user can fix raise :class:`SourceError` with what to do.

``LiveSource`` imports sounddevice (PortAudio) only when it is created, so files and
synthetic scenes work on a machine without PortAudio.
"""

from .chunk import Chunk, Source, SourceError
from .files import FileSource
from .live import LiveSource, input_devices, refresh_devices
from .synthetic import PROFILES, SyntheticScene

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
