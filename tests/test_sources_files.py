"""FileSource: block streaming, scaling of integer PCM, start/duration, flat memory, and
clear errors for missing, non-audio, damaged and truncated files."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from tingbao.edge.sources import Chunk, FileSource, Source, SourceError

FS = 48000


def _noise(seconds, channels=1, seed=0, amplitude=0.3):
    rng = np.random.default_rng(seed)
    return amplitude * rng.uniform(-1, 1, (round(seconds * FS), channels))


def _collect(src):
    chunks = list(src)
    return chunks, np.concatenate([c.data for c in chunks]) if chunks else np.zeros((0, 1))


# -- the Chunk contract ----------------------------------------------------------------


def test_chunk_contract():
    c = Chunk(np.zeros((10, 2)))
    assert c.gap_before == 0 and c.frames == 10
    with pytest.raises(ValueError, match="shape"):
        Chunk(np.zeros(10))
    with pytest.raises(ValueError, match="gap_before"):
        Chunk(np.zeros((10, 1)), gap_before=-1)
    with pytest.raises(AttributeError):
        c.gap_before = 3  # frozen


# -- reading ---------------------------------------------------------------------------


def test_pcm16_full_scale_is_32768_counts(tmp_path):
    counts = np.array([-32768, -16384, -1, 0, 1, 16384, 32767], dtype=np.int16)
    path = tmp_path / "counts.wav"
    sf.write(str(path), counts, FS, subtype="PCM_16")
    with FileSource(path) as src:
        assert src.subtype == "PCM_16" and src.format == "WAV"
        _, x = _collect(src)
    assert x.dtype == np.float64 and x.shape == (7, 1)
    np.testing.assert_array_equal(x[:, 0], counts / 32768.0)


def test_pcm24_full_scale_is_2_pow_23_counts(tmp_path):
    counts = np.array([-(2**23), -(2**22), 0, 2**22, 2**23 - 1], dtype=np.int32) << 8
    path = tmp_path / "counts24.wav"
    sf.write(str(path), counts, FS, subtype="PCM_24")  # int32 input: top 24 bits are kept
    with FileSource(path) as src:
        _, x = _collect(src)
    np.testing.assert_array_equal(x[:, 0], (counts >> 8) / 2.0**23)


@pytest.mark.parametrize(("ext", "subtype"), [("wav", "FLOAT"), ("flac", "PCM_24"),
                                              ("wav", "PCM_16")])
def test_streams_blocks_equal_to_whole_file(tmp_path, ext, subtype):
    x = _noise(2.3, channels=2)
    path = tmp_path / f"noise.{ext}"
    sf.write(str(path), x, FS, subtype=subtype)
    whole = sf.read(str(path), dtype="float64", always_2d=True)[0]
    with FileSource(path, blocksize=10000) as src:
        assert isinstance(src, Source)
        assert (src.samplerate, src.channels, src.frames, src.file_frames) == (
            48000.0, 2, x.shape[0], x.shape[0])
        assert isinstance(src.samplerate, float)
        assert src.subtype == subtype
        chunks, y = _collect(src)
        again = np.concatenate([c.data for c in src])  # iterating again starts again
    assert [c.frames for c in chunks] == [10000] * 11 + [400]
    assert all(c.gap_before == 0 and c.data.shape[1] == 2 for c in chunks)
    np.testing.assert_array_equal(y, whole)
    np.testing.assert_array_equal(again, whole)
    if subtype == "FLOAT":
        np.testing.assert_array_equal(y, x.astype(np.float32))


def test_start_and_duration(tmp_path):
    x = _noise(3.0)
    path = tmp_path / "noise.wav"
    sf.write(str(path), x, FS, subtype="FLOAT")
    with FileSource(path, blocksize=4800, start=0.5, duration=1.25) as src:
        assert src.frames == 60000 and src.duration == 1.25 and src.file_frames == 144000
        _, y = _collect(src)
    np.testing.assert_array_equal(y, x[24000:84000].astype(np.float32))
    with FileSource(path, start=2.5, duration=10.0) as src:  # duration past the end: to the end
        assert src.frames == 24000
        assert _collect(src)[1].shape == (24000, 1)
    with pytest.raises(SourceError, match=r"past the end of the file \(3.000 s\)"):
        FileSource(path, start=3.5)


def test_memory_stays_flat_with_file_length(tmp_path):
    """Streaming a 120 s file (46 MB as float64) must not hold more than a few blocks."""
    path = tmp_path / "long.wav"
    block = (_noise(1.0) * 32767).astype(np.int16)
    with sf.SoundFile(str(path), "w", FS, 1, subtype="PCM_16") as f:
        for _ in range(120):
            f.write(block)
    tracemalloc.start()
    try:
        with FileSource(path, blocksize=48000) as src:
            n = 0
            for chunk in src:
                n += chunk.frames
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == 120 * FS
    assert peak < 5 * 48000 * 8, f"peak {peak / 1e6:.1f} MB while streaming"


def test_closed_source_says_so(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(str(path), _noise(0.1), FS)
    src = FileSource(path)
    src.close()
    src.close()
    with pytest.raises(SourceError, match="closed"):
        list(src)


# -- errors ----------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.wav"
    with pytest.raises(SourceError, match="no such file") as err:
        FileSource(path)
    assert str(path) in str(err.value)


def test_directory(tmp_path):
    with pytest.raises(SourceError, match="is a directory"):
        FileSource(tmp_path)


@pytest.mark.parametrize("content", [b"", b"hello, this is not audio\n", os.urandom(4096)],
                         ids=["empty", "text", "random"])
def test_not_an_audio_file(tmp_path, content):
    path = tmp_path / "x.wav"
    path.write_bytes(content)
    with pytest.raises(SourceError, match="not an audio file") as err:
        FileSource(path)
    msg = str(err.value)
    assert str(path) in msg and "WAV or FLAC" in msg


def test_garbage_wav_header(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(str(good), _noise(0.5), FS, subtype="PCM_16")
    raw = bytearray(good.read_bytes())
    raw[20:36] = os.urandom(16)  # the 'fmt ' chunk body: format, channels, rate, ...
    path = tmp_path / "garbage-header.wav"
    path.write_bytes(bytes(raw))
    with pytest.raises(SourceError) as err:
        FileSource(path)
    assert str(path) in str(err.value) and "re-copy" in str(err.value)


def test_truncated_wav(tmp_path):
    good = tmp_path / "good.wav"
    x = _noise(2.0)
    sf.write(str(good), x, FS, subtype="PCM_16")
    raw = good.read_bytes()
    path = tmp_path / "cut.wav"
    path.write_bytes(raw[: 44 + 2 * 30000 + 1])  # header + 30000 frames + half a sample
    with pytest.raises(SourceError, match="truncated") as err:
        FileSource(path)
    msg = str(err.value)
    assert str(path) in msg and "2.000 s" in msg and "0.625 s" in msg
    assert "allow_truncated=True" in msg
    # what is there can still be read, on request
    with FileSource(path, allow_truncated=True) as src:
        assert src.truncated and src.frames == 30000
        _, y = _collect(src)
    whole = sf.read(str(good), dtype="float64", always_2d=True)[0]
    np.testing.assert_array_equal(y, whole[:30000])


def test_unfinalised_wav_header_is_read_to_the_end(tmp_path):
    """A writer that died before finalising leaves data size 0 (or 0xFFFFFFFF): libsndfile
    reads to the end of the file, and that is not reported as truncation."""
    good = tmp_path / "good.wav"
    sf.write(str(good), _noise(0.5), FS, subtype="PCM_16")
    raw = bytearray(good.read_bytes())
    assert raw[36:40] == b"data"
    raw[40:44] = b"\xff\xff\xff\xff"
    path = tmp_path / "unfinalised.wav"
    path.write_bytes(bytes(raw))
    with FileSource(path) as src:
        assert not src.truncated
        assert _collect(src)[1].shape == (24000, 1)


def test_truncated_flac_raises_after_the_good_part(tmp_path):
    good = tmp_path / "good.flac"
    sf.write(str(good), _noise(4.0), FS, subtype="PCM_16")
    raw = good.read_bytes()
    path = tmp_path / "cut.flac"
    path.write_bytes(raw[: len(raw) // 2])
    delivered = 0
    with pytest.raises(SourceError, match="corrupt or truncated") as err:
        with FileSource(path, blocksize=4800) as src:
            for chunk in src:
                delivered += chunk.frames
    msg = str(err.value)
    assert str(path) in msg and "of 4.000 s" in msg
    assert 0 < delivered < 4 * FS
