"""The contract every audio source keeps: blocks of samples with their gaps.

A source yields :class:`Chunk` objects. ``Chunk.data`` has shape ``(n, channels)``, dtype
float64, in *raw units*: digital full scale is ±1.0 (for integer PCM, 32768 counts of
PCM_16 are 1.0, as soundfile scales them). Converting raw units to pascals is the meter's
job (a sensitivity from calibration, or ``SyntheticScene.pa_per_unit``).

``Chunk.gap_before`` counts samples (frames, per channel) known to be missing immediately
before the chunk: an input overflow of the sound card, a block the consumer was too slow to
take, a dropout. The sum of ``len(chunk.data) + chunk.gap_before`` over a stream is the
number of sample periods that elapsed, so a meter can keep its time axis and its coverage
figure honest instead of silently closing the hole.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Chunk", "Source", "SourceError"]


@dataclass(frozen=True)
class Chunk:
    """One block of audio.

    Attributes:
        data: samples, shape ``(n, channels)``, float64, raw units (digital full scale
            = ±1.0). ``n`` may be smaller than the source's block size (last block, or a
            block cut at a requested duration).
        gap_before: number of sample periods (frames) known to be missing immediately
            before ``data[0]``; ``>= 0``. Zero for a contiguous stream.
    """

    data: np.ndarray
    gap_before: int = 0

    def __post_init__(self) -> None:
        if self.data.ndim != 2:
            raise ValueError(f"Chunk.data must have shape (n, channels), got {self.data.shape}")
        if self.gap_before < 0:
            raise ValueError(f"Chunk.gap_before must be >= 0, got {self.gap_before}")

    @property
    def frames(self) -> int:
        """Number of frames (samples per channel) in ``data``."""
        return int(self.data.shape[0])


class SourceError(Exception):
    """An audio source cannot deliver audio. The message says what went wrong (with the
    file or device concerned) and what to do about it."""


@runtime_checkable
class Source(Protocol):
    """What the edge agent reads audio from.

    Attributes:
        samplerate: sampling rate in Hz.
        channels: number of channels (columns of ``Chunk.data``).

    Iterating yields :class:`Chunk` objects; ``close()`` releases the file or device.
    Sources are also context managers (``with FileSource(path) as src: ...``).
    """

    samplerate: float
    channels: int

    def __iter__(self) -> Iterator[Chunk]: ...

    def close(self) -> None: ...
