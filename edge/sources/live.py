"""Live input from a sound card or measurement microphone through sounddevice (PortAudio).

PortAudio calls :meth:`LiveSource._callback` from its own thread with each block of
``blocksize`` frames; the callback copies the block into a bounded queue and returns at once.
Iterating the source takes the blocks out of the queue as :class:`Chunk` objects (float64,
raw units, full scale ±1.0).

No sample is lost silently:

* a block that arrives while the queue is full (the consumer fell behind by more than
  ``queue_blocks`` blocks) is dropped, and its frames are counted exactly;
* an input overflow reported by PortAudio (``status.input_overflow``: the device or host
  buffer overran before the callback ran) is sized from the continuity of
  ``time.inputBufferAdcTime`` (the capture time of the block's first sample) when the host
  API provides it, else estimated as one block;

in both cases the missing frames become ``gap_before`` of the next chunk that is delivered,
and the counters :attr:`LiveSource.overflows`, :attr:`LiveSource.dropped_blocks` and
:attr:`LiveSource.dropped_frames` go up. ADC time stamps are only used to size a loss that
PortAudio reported: with the ALSA ``pulse`` plugin they jitter by a whole block (a repeated
stamp followed by a skipped one) and drift during the first second of a stream without any
sample being lost, so reading gaps from the time stamps alone would invent dropouts.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from .chunk import Chunk, SourceError

__all__ = ["LiveSource", "input_devices", "refresh_devices"]

_APT_HINT = "apt-get install libportaudio2"


def _sounddevice() -> Any:
    """Import sounddevice, turning a missing PortAudio or package into a SourceError."""
    try:
        import sounddevice as sd
    except OSError as exc:  # raised by sounddevice when libportaudio cannot be loaded
        raise SourceError(
            f"live audio needs the PortAudio library, which could not be loaded ({exc}); "
            f"install it with: {_APT_HINT} (Debian/Ubuntu)"
        ) from exc
    except ImportError as exc:
        raise SourceError(
            f"live audio needs the Python package sounddevice ({exc}); install it with: "
            f"pip install 'tingbao[edge]' (and {_APT_HINT} for PortAudio)"
        ) from exc
    return sd


def refresh_devices() -> None:
    """Make PortAudio enumerate devices again.

    sounddevice initialises PortAudio (and so reads the device list) when it is first
    imported. A sound server started later (e.g. a PulseAudio server behind the ALSA
    ``pulse`` device, found through ``PULSE_SERVER``) or a device plugged in later is seen
    only after this call. Do not call it while a stream is open.
    """
    sd = _sounddevice()
    sd._terminate()
    sd._initialize()


def input_devices() -> list[str]:
    """Names of the devices that can record, as ``"index name (host API)"`` strings."""
    sd = _sounddevice()
    out = []
    for dev in sd.query_devices():
        if dev["max_input_channels"] > 0:
            api = sd.query_hostapis(dev["hostapi"])["name"]
            out.append(f"{dev['index']} {dev['name']} ({api}, {dev['max_input_channels']} in)")
    return out


class LiveSource:
    """Record from an input device, block by block.

    Args:
        device: sounddevice device (index, or a substring of the name such as ``"pulse"``);
            None uses the default input device.
        samplerate: sampling rate in Hz.
        channels: number of input channels to record.
        blocksize: frames per chunk (per PortAudio callback).
        duration: stop after this many seconds of audio (delivered frames plus gaps);
            None records until :meth:`close` is called or the consumer stops iterating.
        latency: PortAudio suggested latency, ``"high"``, ``"low"`` or seconds. ``"high"``
            gives the most robust capture; levels do not need low latency.
        queue_blocks: capacity of the queue between the audio thread and the consumer, in
            blocks; None holds about 10 s of audio.
        timeout: seconds without any block from the device after which iteration raises
            SourceError (a stream's first block can take ~2 s to arrive through PulseAudio).

    Attributes:
        samplerate, channels, blocksize, device: as opened.
        device_name: PortAudio's name of the opened device.
        overflows: input overflows reported by PortAudio/the device.
        underflows: blocks PortAudio flagged as input underflow (filled with zeros).
        dropped_blocks: blocks dropped because the consumer was too slow (queue full).
        dropped_frames: all frames known to be missing (overflows and dropped blocks).
        frames_delivered: frames yielded to the consumer.

    A LiveSource is iterated once; the stream starts with the iteration and is closed when
    the iteration ends. Use as a context manager or call :meth:`close`.

    Raises:
        SourceError: PortAudio or sounddevice missing, no such device, settings the device
            does not support, a stream that cannot start, or no audio within ``timeout``.
    """

    def __init__(
        self,
        device: int | str | None = None,
        samplerate: float = 48000,
        channels: int = 1,
        blocksize: int = 4800,
        duration: float | None = None,
        latency: str | float = "high",
        *,
        queue_blocks: int | None = None,
        timeout: float = 10.0,
    ) -> None:
        if int(blocksize) < 1:
            raise ValueError(f"blocksize must be >= 1 frame, got {blocksize}")
        if int(channels) < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        if duration is not None and duration < 0:
            raise ValueError(f"duration must be >= 0 s or None, got {duration}")
        self.device = device
        self.samplerate = float(samplerate)
        self.channels = int(channels)
        self.blocksize = int(blocksize)
        self.duration = duration
        self.latency = latency
        self.timeout = float(timeout)
        if queue_blocks is None:
            queue_blocks = max(2, math.ceil(10.0 * self.samplerate / self.blocksize))
        if int(queue_blocks) < 1:
            raise ValueError(f"queue_blocks must be >= 1, got {queue_blocks}")
        self.queue_blocks = int(queue_blocks)

        self.overflows = 0
        self.underflows = 0
        self.dropped_blocks = 0
        self.dropped_frames = 0
        self.frames_delivered = 0

        self._queue: queue.Queue[tuple[np.ndarray, int]] = queue.Queue(self.queue_blocks)
        self._pending_gap = 0  # frames missing before the next block put into the queue
        self._next_adc: float | None = None  # expected ADC time of the next block, s
        self._closed = threading.Event()
        self._close_lock = threading.Lock()
        self._iterated = False
        self._stream: Any = None

        sd = _sounddevice()
        self._sd = sd
        try:
            self._stream = sd.InputStream(
                device=device,
                samplerate=self.samplerate,
                channels=self.channels,
                blocksize=self.blocksize,
                dtype="float32",  # the widest format PortAudio offers; float64 on output
                latency=latency,
                callback=self._callback,
            )
        except (ValueError, sd.PortAudioError) as exc:
            try:
                devices = "; ".join(input_devices()) or "none"
            except Exception:  # the listing is only a hint
                devices = "(could not list devices)"
            raise SourceError(
                f"cannot open input device {device!r} at {self.samplerate:g} Hz with "
                f"{self.channels} channel(s): {exc}. Input devices: {devices}. Choose one of "
                "them (index or name), or another sample rate / channel count it supports"
            ) from exc
        self.device_name = sd.query_devices(self._stream.device)["name"]

    # -- audio thread -----------------------------------------------------------------

    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio callback (audio thread): queue a copy of the block, never block."""
        self._on_block(
            indata,
            frames,
            float(time_info.inputBufferAdcTime),
            bool(status.input_overflow),
            bool(status.input_underflow),
        )

    def _on_block(
        self,
        indata: np.ndarray,
        frames: int,
        adc_time: float,
        overflow: bool,
        underflow: bool = False,
    ) -> None:
        """Account for one block from the device and queue it (or drop it if full).

        ``adc_time`` is the capture time in seconds of the block's first sample on the
        stream's clock, 0.0 when the host API does not provide it. ``overflow`` says that
        input was lost before this block.
        """
        if overflow:
            self.overflows += 1
            lost = 0
            if adc_time > 0.0 and self._next_adc is not None:
                lost = int(round((adc_time - self._next_adc) * self.samplerate))
            if lost <= 0:  # no usable time stamps: assume one block went missing
                lost = frames
            self._pending_gap += lost
            self.dropped_frames += lost
        if underflow:
            self.underflows += 1
        self._next_adc = adc_time + frames / self.samplerate if adc_time > 0.0 else None
        try:
            self._queue.put_nowait((indata.copy(), self._pending_gap))
        except queue.Full:
            self.dropped_blocks += 1
            self.dropped_frames += frames
            self._pending_gap += frames
        else:
            self._pending_gap = 0

    # -- consumer side ----------------------------------------------------------------

    def __iter__(self) -> Iterator[Chunk]:
        if self._iterated:
            raise SourceError("a LiveSource can be iterated only once; create a new LiveSource")
        if self._closed.is_set():
            raise SourceError("the LiveSource is closed; create a new LiveSource")
        self._iterated = True
        return self._chunks()

    def _chunks(self) -> Iterator[Chunk]:
        sd = self._sd
        try:
            self._stream.start()
        except sd.PortAudioError as exc:
            self.close()
            raise SourceError(
                f"cannot start recording from {self.device_name!r}: {exc}; check that the "
                "device is connected and not used exclusively by another program"
            ) from exc
        limit = None if self.duration is None else int(round(self.duration * self.samplerate))
        elapsed = 0  # frames delivered plus gaps
        last_block = time.monotonic()
        try:
            while limit is None or elapsed < limit:
                try:
                    data, gap = self._queue.get(timeout=0.1)
                except queue.Empty:
                    if self._closed.is_set():
                        return
                    if not self._stream.active:
                        raise SourceError(
                            f"the input stream from {self.device_name!r} stopped unexpectedly; "
                            "check the device connection and restart"
                        ) from None
                    if time.monotonic() - last_block > self.timeout:
                        raise SourceError(
                            f"no audio from {self.device_name!r} for {self.timeout:g} s; check "
                            "that the device is connected and, for the 'pulse' device, that a "
                            "PulseAudio server is running (PULSE_SERVER)"
                        ) from None
                    continue
                last_block = time.monotonic()
                if limit is not None:
                    if elapsed + gap >= limit:
                        return  # the gap covers the rest of the requested duration
                    data = data[: limit - elapsed - gap]
                elapsed += gap + data.shape[0]
                self.frames_delivered += data.shape[0]
                yield Chunk(data.astype(np.float64), int(gap))
        finally:
            self.close()

    @property
    def active(self) -> bool:
        """True while the stream is recording."""
        return self._stream is not None and bool(self._stream.active)

    def close(self) -> None:
        """Stop recording and release the device. Safe to call more than once and from
        another thread (an iteration in progress then ends)."""
        self._closed.set()
        with self._close_lock:
            if self._stream is not None and not self._stream.closed:
                self._stream.close()  # discards pending buffers, as abort() would

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"LiveSource({self.device!r}, samplerate={self.samplerate:g}, "
                f"channels={self.channels}, blocksize={self.blocksize})")
