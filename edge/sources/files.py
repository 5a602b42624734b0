"""Audio files (WAV, FLAC, anything libsndfile reads) as a streaming source.

The file is read block by block (``blocksize`` frames at a time), so memory stays flat
however long the recording is. Samples come out as float64 in raw units: for integer PCM
subtypes soundfile scales to full scale ±1.0, i.e. for PCM_16 32768 counts = 1.0 (and for
PCM_24 2**23 counts, PCM_32 2**31 counts); FLOAT/DOUBLE files pass through unchanged.

Files that are not audio, whose header is damaged, or whose data stops before the header
says it should (a WAV cut short by a full disk or an interrupted copy; a FLAC stream that
loses sync) raise :class:`~tingbao.edge.sources.chunk.SourceError` naming the file and what
to do. A truncated WAV is detected before any sample is read; a FLAC stream that breaks
part-way raises when the reader reaches the damage, after the good blocks before it were
delivered.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator

import numpy as np
import soundfile as sf

from .chunk import Chunk, SourceError

__all__ = ["FileSource"]

_FIX = "Re-copy the file or re-export it from the original recording"


def _riff_data_shortfall(path: str) -> tuple[int, int] | None:
    """For a RIFF/RIFX WAVE file, return ``(declared, available)`` byte counts of the
    ``data`` chunk when the file holds fewer bytes than the header declares; else None.

    A ``data`` size of 0 or 0xFFFFFFFF (a writer that never finalised the header, or an
    RF64 placeholder) means "unknown length", which libsndfile reads to the end of the
    file; that is not reported as truncation. Files that are not RIFF WAVE return None.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX"):
            return None
        endian = "<" if head[:4] == b"RIFF" else ">"
        pos = 12
        while pos + 8 <= size:
            fh.seek(pos)
            ck = fh.read(8)
            ck_id, ck_size = ck[:4], struct.unpack(endian + "I", ck[4:8])[0]
            if ck_id == b"data":
                if ck_size in (0, 0xFFFFFFFF):
                    return None
                available = size - (pos + 8)
                return (ck_size, available) if available < ck_size else None
            pos += 8 + ck_size + (ck_size & 1)
    return None


class FileSource:
    """Stream an audio file block by block.

    Args:
        path: file to read (WAV, FLAC, or any format libsndfile reads).
        blocksize: frames per chunk (the last chunk may be shorter).
        start: offset into the file in seconds where reading begins.
        duration: seconds to read from ``start``; None reads to the end of the file.
        allow_truncated: if True, a WAV whose data chunk is shorter than its header
            declares is read as far as it goes (``truncated`` is set) instead of raising.

    Attributes:
        path: the file (str).
        samplerate: sampling rate in Hz (float).
        channels: number of channels.
        frames: number of frames this source yields (after ``start`` / ``duration``).
        file_frames: number of frames in the whole file.
        subtype: libsndfile subtype, e.g. ``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``.
        format: container format, e.g. ``"WAV"``, ``"FLAC"``.
        truncated: True when the data stops before the header says it should
            (only possible with ``allow_truncated=True``).

    Chunks have ``gap_before == 0``: a file has no gaps that the reader could know of.
    Iterating again starts again at ``start``. Use as a context manager or call
    :meth:`close`.

    Raises:
        SourceError: missing file, not an audio file, damaged header, truncated data, or
            ``start`` past the end of the file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        blocksize: int = 48000,
        start: float = 0.0,
        duration: float | None = None,
        *,
        allow_truncated: bool = False,
    ) -> None:
        self.path = os.fspath(path)
        if int(blocksize) < 1:
            raise ValueError(f"blocksize must be >= 1 frame, got {blocksize}")
        if start < 0:
            raise ValueError(f"start must be >= 0 s, got {start}")
        if duration is not None and duration < 0:
            raise ValueError(f"duration must be >= 0 s or None, got {duration}")
        self.blocksize = int(blocksize)
        self._file: sf.SoundFile | None = None

        if not os.path.exists(self.path):
            raise SourceError(f"{self.path}: no such file; check the path and the working "
                              f"directory ({os.getcwd()})")
        if os.path.isdir(self.path):
            raise SourceError(f"{self.path}: is a directory, not an audio file; give the path "
                              "of a WAV or FLAC file")
        try:
            self._file = sf.SoundFile(self.path)
        except RuntimeError as exc:  # soundfile.LibsndfileError in soundfile >= 0.11
            reason = getattr(exc, "error_string", None) or str(exc).rsplit(": ", 1)[-1]
            raise SourceError(
                f"{self.path}: not an audio file that libsndfile can read "
                f"({reason.rstrip('.')}). Give a WAV or FLAC recording; if this should be "
                "one, it is damaged: re-copy or re-export it"
            ) from exc
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot open ({exc}). Check the file's "
                              "permissions, or re-copy it") from exc

        f = self._file
        self.samplerate = float(f.samplerate)
        self.channels = int(f.channels)
        self.subtype = str(f.subtype)
        self.format = str(f.format)
        self.file_frames = int(f.frames)
        self.truncated = False

        shortfall = _riff_data_shortfall(self.path)
        if shortfall is not None:
            declared, available = shortfall
            block_align = self._block_align_guess()
            msg = (
                f"{self.path}: truncated WAV: the header declares {declared} bytes of audio "
                f"({declared / block_align / self.samplerate:.3f} s) but the file holds only "
                f"{available} ({self.file_frames / self.samplerate:.3f} s); the recording or "
                f"copy was cut short. {_FIX}, or pass allow_truncated=True to read the "
                f"{self.file_frames / self.samplerate:.3f} s that are there"
            )
            if not allow_truncated:
                self.close()
                raise SourceError(msg)
            self.truncated = True

        self.start_frame = int(round(start * self.samplerate))
        if self.start_frame > self.file_frames or (
            self.start_frame == self.file_frames and self.file_frames > 0 and start > 0
        ):
            length = self.file_frames / self.samplerate
            self.close()
            raise SourceError(
                f"{self.path}: start={start} s is past the end of the file ({length:.3f} s); "
                "choose a start inside the recording"
            )
        stop = self.file_frames
        if duration is not None:
            stop = min(stop, self.start_frame + int(round(duration * self.samplerate)))
        self.stop_frame = stop
        self.frames = stop - self.start_frame

    def _block_align_guess(self) -> int:
        bits = {"PCM_U8": 8, "PCM_S8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32,
                "FLOAT": 32, "DOUBLE": 64, "ULAW": 8, "ALAW": 8}.get(self.subtype, 16)
        return self.channels * bits // 8

    @property
    def duration(self) -> float:
        """Seconds of audio this source yields."""
        return self.frames / self.samplerate

    def __iter__(self) -> Iterator[Chunk]:
        f = self._file
        if f is None or f.closed:
            raise SourceError(f"{self.path}: source is closed; create a new FileSource")
        try:
            f.seek(self.start_frame)
        except RuntimeError as exc:  # soundfile.LibsndfileError
            raise SourceError(f"{self.path}: cannot seek to frame {self.start_frame} ({exc}). "
                              f"{_FIX}") from exc
        pos = self.start_frame
        while pos < self.stop_frame:
            want = min(self.blocksize, self.stop_frame - pos)
            try:
                block = f.read(want, dtype="float64", always_2d=True)
            except RuntimeError as exc:  # soundfile.LibsndfileError
                raise SourceError(
                    f"{self.path}: corrupt or truncated audio data at "
                    f"{pos / self.samplerate:.3f} s of {self.file_frames / self.samplerate:.3f} s "
                    f"({exc}); the audio before that point was delivered. {_FIX}"
                ) from exc
            got = block.shape[0]
            if got == 0:
                raise SourceError(
                    f"{self.path}: the audio data ends at {pos / self.samplerate:.3f} s but the "
                    f"header promises {self.file_frames / self.samplerate:.3f} s (truncated "
                    f"file); the audio before that point was delivered. {_FIX}"
                )
            pos += got
            yield Chunk(np.ascontiguousarray(block))

    def close(self) -> None:
        """Close the file. Safe to call more than once."""
        if self._file is not None and not self._file.closed:
            self._file.close()

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"FileSource({self.path!r}, samplerate={self.samplerate:g}, "
                f"channels={self.channels}, subtype={self.subtype!r}, "
                f"duration={self.duration:.3f} s)")
