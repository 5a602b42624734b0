"""LiveSource against real audio: a private PulseAudio server (fixture ``pulse_server`` in
support/pulse.py) plays a WAV into a null sink; sounddevice records its monitor through the ALSA
``pulse`` device. The audio path is never mocked. Two tests drive what PulseAudio cannot
provoke: a PortAudio-reported input overflow (fed to the accounting method directly) and a
machine without the PortAudio library (simulated in a subprocess)."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from support.wait import hold

from tingbao.edge.sources import Chunk, LiveSource, Source, SourceError

pytestmark = pytest.mark.slow  # seconds of live audio per test (marked live_audio, too)

FS = 48000


def _sine_wav(path, amplitude=0.5, freq=1000.0, seconds=3.0, pad=0.3, fs=FS):
    """A sine with ``pad`` seconds of silence before and after: PulseAudio drops roughly
    the first 90 ms of a stream that starts playing into the idle null sink."""
    t = np.arange(int(seconds * fs)) / fs
    silence = np.zeros(int(pad * fs))
    x = np.concatenate([silence, amplitude * np.sin(2 * np.pi * freq * t), silence])
    sf.write(str(path), x, fs, subtype="FLOAT")
    return path


def test_records_played_sine_at_its_amplitude(pulse_server, tmp_path):
    wav = _sine_wav(tmp_path / "sine.wav", amplitude=0.5, seconds=2.0)
    chunks: list[Chunk] = []
    player = None
    duration = 3.5
    with LiveSource(device="pulse", samplerate=FS, channels=1, blocksize=4800,
                    duration=duration) as src:
        assert isinstance(src, Source)
        for chunk in src:
            chunks.append(chunk)
            if player is None:  # the stream is running: play now
                player = pulse_server.play(wav)
        counters = (src.overflows, src.dropped_blocks, src.dropped_frames)
    assert player is not None
    _, err = player.communicate(timeout=10)
    assert player.returncode == 0, err.decode()

    assert all(c.data.dtype == np.float64 and c.data.shape[1] == 1 for c in chunks)
    frames = sum(c.frames for c in chunks)
    gaps = sum(c.gap_before for c in chunks)
    # `duration` means seconds of audio: delivered frames plus gaps, exactly
    assert frames + gaps == int(duration * FS)
    assert gaps == 0 and counters == (0, 0, 0), "an idle consumer must not lose blocks"

    x = np.concatenate([c.data for c in chunks])[:, 0]
    block_rms = np.sqrt(np.mean(x[: x.size // 480 * 480].reshape(-1, 480) ** 2, axis=1))
    on = np.flatnonzero(block_rms > 0.1)  # 10 ms blocks where the tone plays
    assert on.size, f"the played tone was not recorded (max |x| = {np.abs(x).max():.3g})"
    # the tone is contiguous and as long as in the file (2 s)
    assert on[-1] - on[0] + 1 == on.size
    assert on[-1] < block_rms.size - 1, "the tone did not end within the recording"
    assert abs(on.size * 0.01 - 2.0) <= 0.015, on.size
    steady = x[(on[0] + 20) * 480 : (on[-1] - 19) * 480]  # drop 0.2 s at each end
    rms = float(np.sqrt(np.mean(steady**2)))
    assert rms == pytest.approx(0.5 / np.sqrt(2.0), rel=0.005)
    spectrum = np.abs(np.fft.rfft(steady * np.hanning(steady.size)))
    peak_hz = np.fft.rfftfreq(steady.size, 1 / FS)[np.argmax(spectrum)]
    assert peak_hz == pytest.approx(1000.0, abs=2.0)
    # before the tone: silence from the null sink
    if on[0] > 5:
        assert np.max(np.abs(x[: (on[0] - 5) * 480])) < 1e-3


def test_slow_consumer_loses_blocks_but_never_silently(pulse_server):
    """A consumer that sleeps 0.25 s per 50 ms block, with room for 2 blocks in the queue:
    most blocks are dropped, and every dropped frame reappears as gap_before, so that
    frames + gaps follow the clock."""
    blocksize = 2400
    block_s = blocksize / FS
    chunks: list[Chunk] = []
    arrivals: list[float] = []
    waited: list[float] = []
    with LiveSource(device="pulse", samplerate=FS, blocksize=blocksize, queue_blocks=2) as src:
        it = iter(src)
        slow_until = None
        fresh = 0
        while True:
            t_ask = time.monotonic()
            chunk = next(it)
            now = time.monotonic()
            chunks.append(chunk)
            arrivals.append(now)
            waited.append(now - t_ask)
            if slow_until is None:
                slow_until = now + 3.0
            if now < slow_until:
                hold(0.25, "a consumer too slow on purpose: blocks pile up and are dropped")
                continue
            # then keep up until the queue is drained and blocks arrive as they are recorded
            if now - t_ask > 0.3 * block_s:
                fresh += 1
                if fresh == 3:
                    break
        counters = src.overflows, src.dropped_blocks, src.dropped_frames
    assert not src.active
    overflows, dropped_blocks, dropped_frames = counters

    gaps = np.array([c.gap_before for c in chunks])
    assert dropped_blocks > 0 and gaps.sum() > 0
    assert gaps[0] == 0 and np.all(gaps % blocksize == 0)  # whole blocks were dropped
    # after draining, every drop is attached to a delivered chunk
    assert gaps.sum() == dropped_frames
    if overflows == 0:
        assert dropped_frames == dropped_blocks * blocksize
    # the first and the last chunk both arrived as they were recorded (the consumer was
    # waiting), so frames + gaps between them must match the clock between them
    assert waited[0] > 0.3 * block_s and waited[-1] > 0.3 * block_s
    frames_between = sum(c.frames for c in chunks[1:]) + int(gaps[1:].sum())
    elapsed = (arrivals[-1] - arrivals[0]) * FS
    assert frames_between == pytest.approx(elapsed, abs=0.25 * FS), (frames_between, elapsed)
    # without the gaps the stream would be far too short: the check above has teeth
    assert sum(c.frames for c in chunks[1:]) < 0.5 * elapsed


def test_reported_overflow_is_sized_from_adc_time(pulse_server):
    """PortAudio input overflows cannot be provoked through PulseAudio (the server buffers
    instead of overrunning), so the accounting for them is driven directly: ADC time stamps
    size the gap, and without time stamps one block is assumed lost."""
    with LiveSource(device="pulse", samplerate=FS, blocksize=480, queue_blocks=8) as src:
        block = np.zeros((480, 1), dtype=np.float32)
        t0 = 1000.0
        src._on_block(block, 480, t0, overflow=False)
        src._on_block(block, 480, t0 + 0.01, overflow=False)
        # 1200 frames (25 ms) went missing between the 2nd and 3rd block
        src._on_block(block, 480, t0 + 0.02 + 0.025, overflow=True)
        src._on_block(block, 480, 0.0, overflow=True)  # no time stamp: one block assumed
        # an unflagged jump of the time stamps (PulseAudio jitter) is not a gap
        src._on_block(block, 480, t0 + 0.5, overflow=False)
        gaps = [src._queue.get_nowait()[1] for _ in range(5)]
        assert gaps == [0, 0, 1200, 480, 0]
        assert src.overflows == 2 and src.dropped_frames == 1680 and src.dropped_blocks == 0


def test_bad_device_names_the_choices(pulse_server):
    with pytest.raises(SourceError, match="Input devices: .*pulse"):
        LiveSource(device="no-such-device-xyz")


def test_iterates_once(pulse_server):
    src = LiveSource(device="pulse", duration=0.2)
    chunks = list(src)
    assert sum(c.frames + c.gap_before for c in chunks) == int(0.2 * FS)
    with pytest.raises(SourceError, match="only once"):
        iter(src)
    src.close()
    src.close()


def test_missing_portaudio_says_what_to_install():
    """Without the PortAudio library, creating a LiveSource says which package to install.
    (A subprocess in which the library lookup finds nothing, as on a machine without
    libportaudio2; files and synthetic scenes still import.)"""
    code = (
        "import ctypes.util\n"
        "ctypes.util.find_library = lambda name: None\n"
        "from tingbao.edge.sources import FileSource, LiveSource, SourceError\n"
        "try:\n"
        "    LiveSource()\n"
        "except SourceError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert "apt-get install libportaudio2" in out.stdout
