"""Audio input: read any common format, mix to mono, resample to 16 kHz, validate, trim silence.

Every problem with an input file raises a subclass of `AudioError` whose message names the file and
the reason, so a batch job can report it and move on instead of failing deep inside the model.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from .errors import (
    AudioError,
    AudioLimitError,
    ConfigError,
    CorruptAudioError,
    EmptyAudioError,
    InvalidSamplesError,
    MissingAudioError,
    SilentAudioError,
    TooShortError,
    UnsupportedFormatError,
)

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # samples in one 25 ms analysis frame at 16 kHz
FRAME_STEP = 160  # 10 ms hop
SUPPORTED_EXTENSIONS = (".wav", ".flac", ".ogg", ".opus", ".mp3")
WRITABLE_EXTENSIONS = (".wav", ".flac")
TRIM_METHODS = ("reference", "energy", "none", "resemblyzer")
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4000, 384000
MAX_SECONDS = 1200.0  # default bound on a recording's declared duration; DEEP_SPEAKER_MAX_AUDIO_SECONDS raises it
MAX_CHANNELS = 64
MAX_STREAM_SECONDS = 24 * 3600.0  # readers that stream (diarization) take recordings up to a day


def max_seconds() -> float:
    """The longest recording accepted (seconds): `DEEP_SPEAKER_MAX_AUDIO_SECONDS`, else 20 minutes."""
    return float(os.environ.get("DEEP_SPEAKER_MAX_AUDIO_SECONDS", MAX_SECONDS))


def check_declared(num_samples: int, sample_rate: int, channels: int = 1, source=None, limit_seconds: float | None = None) -> None:
    """Refuse, before decoding or resampling anything, a recording whose header promises absurd work.

    A 100 KB file may claim a 1 Hz sample rate (hours of audio once resampled) or 2^36 samples.
    `limit_seconds` (default `max_seconds()`) is higher for readers that stream.
    """
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioLimitError(f"{describe_source(source)}: sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioLimitError(f"{describe_source(source)}: {channels} channels (at most {MAX_CHANNELS})")
    seconds, limit = num_samples / sample_rate, limit_seconds or max_seconds()
    if seconds > limit:
        raise AudioLimitError(
            f"{describe_source(source)}: {seconds:.0f} s of audio, longer than the limit of {limit:.0f} s "
            "(set DEEP_SPEAKER_MAX_AUDIO_SECONDS to raise it)"
        )


def describe_source(source) -> str:
    """How messages name a recording: its path, or `<waveform>` for an array."""
    return str(source) if source is not None else "<waveform>"


def _decoding_error(path: Path, error: Exception) -> AudioError:
    """What libsndfile's failure means for the user: an unsupported format, or a corrupt file."""
    if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
        return UnsupportedFormatError(
            f"{path}: unsupported format '{path.suffix or 'no extension'}'; supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    return CorruptAudioError(f"{path}: cannot decode audio ({error})")


def _wav_data_claim(path: Path) -> tuple[int, int] | None:
    """(bytes the WAV header says its audio holds, bytes after the data chunk's header) of a RIFF/WAVE file, or None
    for other formats. libsndfile quietly reads what is there when the two disagree; we do not."""
    with open(path, "rb") as stream:
        if stream.read(4) != b"RIFF" or not stream.read(4) or stream.read(4) != b"WAVE":
            return None
        for _ in range(64):  # a WAV has a handful of chunks before its data
            header = stream.read(8)
            if len(header) < 8:
                return None
            size = int.from_bytes(header[4:], "little")
            if header[:4] == b"data":
                return size, path.stat().st_size - stream.tell()
            stream.seek(size + size % 2, 1)  # chunks are padded to even sizes
    return None


def _checked_info(path: Path, limit_seconds: float | None = None):
    """The file's header, after refusing a missing or empty file and a header that promises absurd work or more
    audio than the file holds."""
    if not path.is_file():
        raise MissingAudioError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise EmptyAudioError(f"{path}: empty file (0 bytes)")
    claim = _wav_data_claim(path)
    if claim is not None and claim[0] > claim[1]:
        raise CorruptAudioError(
            f"{path}: the WAV header says its audio takes {claim[0]:,} bytes, but only {claim[1]:,} follow: truncated, or "
            "a header that lies; refused (re-save the file with a tool that writes its length)"
        )
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise _decoding_error(path, error) from error
    check_declared(info.frames, info.samplerate, info.channels, source=path, limit_seconds=limit_seconds)
    return info


def require_readable(path, limit_seconds: float | None = None) -> float:
    """Refuse, from its header alone, a file `read_audio` would refuse as missing, empty, not audio, corrupt or
    longer than the limit: commands call it on their inputs before loading a model (seconds, not a wasted start-up).
    Returns the recording's length in seconds."""
    info = _checked_info(Path(path), limit_seconds)
    return info.frames / info.samplerate


def read_audio(path: str | os.PathLike, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a file as mono float32 at `sample_rate` (channels averaged, resampled with soxr HQ).

    soxr HQ is what librosa uses by default, so the samples match the reference's `librosa.load`.
    """
    path = Path(path)
    _checked_info(path)
    try:
        samples, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as error:
        raise _decoding_error(path, error) from error
    return to_model_input(samples, file_rate, sample_rate, source=path)


def check_audio_target(path) -> Path:
    """`path` as a Path if the toolkit can write audio there (16-bit WAV or FLAC, by the suffix), else a clear error
    (checked before long work, not after it)."""
    path = Path(path)
    if path.suffix.lower() not in WRITABLE_EXTENSIONS:
        raise ConfigError(f"{path}: audio is written as {' or '.join(WRITABLE_EXTENSIONS)} (16-bit); choose one of those suffixes")
    return path


def write_audio(path, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """`waveform` as a 16-bit WAV or FLAC file (by the suffix), written atomically."""
    from .fileio import atomic_replace

    path = check_audio_target(path)
    atomic_replace(path, lambda temporary: sf.write(temporary, waveform, sample_rate, subtype="PCM_16"), suffix=path.suffix)


def stream_audio(path, chunk_seconds: float = 300.0, sample_rate: int = SAMPLE_RATE):
    """Mono float32 chunks at `sample_rate` of a file of any length (up to `MAX_STREAM_SECONDS`), read and resampled
    block by block (soxr's streaming resampler), so memory does not grow with the duration. Every chunk but the
    last has exactly `chunk_seconds` of samples. Errors as `read_audio`'s."""
    path = Path(path)
    info = _checked_info(path, MAX_STREAM_SECONDS)
    chunk = int(chunk_seconds * sample_rate)
    resampler = (
        soxr.ResampleStream(info.samplerate, sample_rate, 1, dtype="float32", quality="HQ") if info.samplerate != sample_rate else None
    )
    pending, emitted = np.zeros(0, np.float32), 0
    try:
        for block in sf.blocks(str(path), blocksize=max(1, int(chunk_seconds * info.samplerate) // 4), dtype="float32", always_2d=True):
            mono = block.mean(axis=1, dtype=np.float32)
            if not np.all(np.isfinite(mono)):
                raise InvalidSamplesError(f"{path}: contains NaN or infinite samples")
            pending = np.concatenate([pending, resampler.resample_chunk(mono) if resampler else mono])
            while pending.size >= chunk:
                yield pending[:chunk]
                emitted += chunk
                pending = pending[chunk:]
    except (sf.LibsndfileError, RuntimeError) as error:
        raise _decoding_error(path, error) from error
    if resampler:
        pending = np.concatenate([pending, resampler.resample_chunk(np.zeros(0, np.float32), last=True)])
    if pending.size or not emitted:
        if not emitted and not np.any(pending):
            raise SilentAudioError(f"{path}: silent (every sample is zero)")
        yield pending


def to_model_input(samples: np.ndarray, file_rate: int, sample_rate: int = SAMPLE_RATE, source=None) -> np.ndarray:
    """Validate a waveform (samples,) or (samples, channels) and return mono float32 at `sample_rate`; one whose
    peak is beyond full scale (a float file) is scaled down to full scale."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim in (1, 2):
        check_declared(samples.shape[0], int(file_rate), samples.shape[1] if samples.ndim == 2 else 1, source)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32) if samples.shape[1] > 1 else samples[:, 0]
    elif samples.ndim != 1:
        raise AudioError(f"{describe_source(source)}: waveform must be 1-D or (samples, channels), got shape {samples.shape}")
    if samples.size == 0:
        raise EmptyAudioError(f"{describe_source(source)}: contains no samples")
    if not np.all(np.isfinite(samples)):
        raise InvalidSamplesError(f"{describe_source(source)}: contains NaN or infinite samples")
    peak = float(np.max(np.abs(samples)))
    if peak > 1.0:  # a float recording beyond full scale: its level means nothing, its shape does (clipping would distort it)
        samples = samples / peak
    if file_rate != sample_rate:
        samples = _resample(samples, file_rate, sample_rate)
    if not np.any(samples):
        raise SilentAudioError(f"{describe_source(source)}: silent (every sample is zero)")
    return samples


def _resample(samples: np.ndarray, file_rate: int, sample_rate: int) -> np.ndarray:
    """soxr HQ resampling to ceil(n * ratio) samples, the length librosa.load returns."""
    resampled = soxr.resample(samples, file_rate, sample_rate, quality="HQ").astype(np.float32, copy=False)
    target_length = int(np.ceil(samples.size * sample_rate / file_rate))
    if resampled.size < target_length:
        resampled = np.pad(resampled, (0, target_length - resampled.size))
    return resampled[:target_length]


def reference_speech_indices(samples: np.ndarray) -> np.ndarray:
    """The reference's trim as indices: the samples between the first and last one louder than the 95th
    percentile, the end exclusive as in the reference (`audio[offsets[0]:offsets[-1]]`)."""
    magnitude = np.abs(samples)
    loud = np.flatnonzero(magnitude > np.percentile(magnitude, 95))
    return np.arange(loud[0], loud[-1]) if loud.size else np.arange(0)


def trim_silence_reference(samples: np.ndarray) -> np.ndarray:
    """The reference's trim: keep samples between the first and last one louder than the 95th percentile."""
    return samples[reference_speech_indices(samples)]


def speech_blocks(samples: np.ndarray, dynamic_range_db: float = 35.0, context_frames: int = 5) -> np.ndarray:
    """Energy voice activity per 10 ms block (bool, one per FRAME_STEP samples): blocks of 25 ms frames within
    `dynamic_range_db` of the loud frames, each loud frame keeping `context_frames` either side so word
    onsets and endings survive."""
    num_blocks = -(-samples.size // FRAME_STEP)
    if samples.size < FRAME_LENGTH:
        return np.zeros(num_blocks, dtype=bool)
    frames = np.lib.stride_tricks.sliding_window_view(samples, FRAME_LENGTH)[::FRAME_STEP]
    energy_db = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = energy_db > np.percentile(energy_db, 95) - dynamic_range_db
    kernel = np.ones(2 * context_frames + 1)
    voiced = np.convolve(loud.astype(float), kernel, mode="same") > 0
    blocks_per_frame = -(-FRAME_LENGTH // FRAME_STEP)
    return np.convolve(voiced, np.ones(blocks_per_frame))[:num_blocks] > 0


def energy_speech_indices(samples: np.ndarray, dynamic_range_db: float = 35.0, context_frames: int = 5) -> np.ndarray:
    """Indices of the samples in the 10 ms blocks of `speech_blocks`."""
    if samples.size < FRAME_LENGTH:
        return np.arange(0)
    return np.flatnonzero(np.repeat(speech_blocks(samples, dynamic_range_db, context_frames), FRAME_STEP)[: samples.size])


def volume_gain(samples: np.ndarray, target_dbfs: float = -30.0) -> float:
    """The factor `normalize_volume` applies: up to `target_dbfs` average power, never down."""
    change_db = target_dbfs - 10 * np.log10(np.mean(samples**2))
    return 1.0 if change_db < 0 else 10 ** (change_db / 20)


def normalize_volume(samples: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    """Raise (never lower) the level to `target_dbfs` average power: Resemblyzer's `normalize_volume(increase_only)`."""
    gain = volume_gain(samples, target_dbfs)
    return samples if gain == 1.0 else samples * gain


def webrtcvad_voiced_windows(
    samples: np.ndarray, sample_rate: int = SAMPLE_RATE, window_ms: int = 30, average_width: int = 8, max_silence: int = 6
) -> np.ndarray:
    """Resemblyzer's `trim_long_silences` decision per `window_ms` window (bool; the tail past the last whole window
    dropped): WebRTC VAD (mode 3) on 16-bit audio, smoothed by a moving average of 8 windows, dilated by 6.

    WebRTC's detector is a fixed-point GMM in C; `webrtcvad` (the maintained `webrtcvad-wheels` build) runs it,
    rather than a reimplementation that could only approximate it."""
    import webrtcvad
    from scipy.ndimage import binary_dilation

    window = window_ms * sample_rate // 1000
    samples = samples[: samples.size - samples.size % window]
    if samples.size == 0:
        return np.zeros(0, dtype=bool)
    pcm = np.round(np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16).tobytes()  # a cast alone wraps loud samples round
    vad = webrtcvad.Vad(3)
    flags = np.array(
        [vad.is_speech(pcm[start * 2 : (start + window) * 2], sample_rate) for start in range(0, samples.size, window)], dtype=float
    )
    padded = np.concatenate([np.zeros((average_width - 1) // 2), flags, np.zeros(average_width // 2)])
    running = np.cumsum(padded, dtype=float)
    running[average_width:] = running[average_width:] - running[:-average_width]
    voiced = np.round(running[average_width - 1 :] / average_width).astype(bool)
    return binary_dilation(voiced, np.ones(max_silence + 1))


def webrtcvad_speech_indices(samples: np.ndarray, sample_rate: int = SAMPLE_RATE, window_ms: int = 30) -> np.ndarray:
    """Indices of the samples Resemblyzer's `trim_long_silences` keeps (`webrtcvad_voiced_windows`)."""
    return np.flatnonzero(np.repeat(webrtcvad_voiced_windows(samples, sample_rate, window_ms), window_ms * sample_rate // 1000))


def speech_selection(samples: np.ndarray, method: str = "reference") -> tuple[np.ndarray, float]:
    """What trimming keeps, as (sample indices, gain): `trim_silence(samples) == gain * samples[indices]`.
    Attacks differentiate through it: the model sees a gather of the waveform, times a constant."""
    if method == "resemblyzer":
        if not samples.size:
            return np.arange(0), 1.0
        gain = volume_gain(samples)
        return webrtcvad_speech_indices(samples if gain == 1.0 else samples * gain), gain
    if method == "reference":
        return reference_speech_indices(samples), 1.0
    if method == "energy":
        return energy_speech_indices(samples), 1.0
    if method == "none":
        return np.arange(samples.size), 1.0
    raise ConfigError(f"unknown trim method {method!r}; choose from {TRIM_METHODS}")


def trim_silence(samples: np.ndarray, method: str = "reference", source=None) -> np.ndarray:
    """Trim with `method` ('reference', 'energy', 'none', or 'resemblyzer': its volume normalisation and WebRTC
    VAD); raise `TooShortError` if < one frame is left."""
    indices, gain = speech_selection(samples, method)
    trimmed = samples[indices] if gain == 1.0 else samples[indices] * gain
    if trimmed.size < FRAME_LENGTH:
        raise TooShortError(
            f"{describe_source(source)}: only {trimmed.size} samples of speech after '{method}' trimming; "
            f"at least {FRAME_LENGTH} (25 ms) are needed"
        )
    return trimmed


def crop_waveform(waveform: np.ndarray, length: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """`length` samples: a random window with `rng`, else the centre; a shorter recording repeats to fill it (a zero
    tail would be a silence cue to a model trained on the crops)."""
    if waveform.size < length:
        waveform = np.tile(waveform, -(-length // waveform.size))
    start = int(rng.integers(0, waveform.size - length + 1)) if rng is not None else (waveform.size - length) // 2
    return waveform[start : start + length]


def load_speech(path, trim: str = "reference", sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a file and trim its silence: the waveform the feature extractor expects."""
    return trim_silence(read_audio(path, sample_rate), trim, source=path)


class Recording:
    """One recording decoded once, mono float32 at 16 kHz, with each trim of it computed once: the members of a
    score fusion, the spoof gate and the verifier take it instead of a path, so nothing decodes or trims a file twice.
    `name` (its path, or None for a waveform) is what messages call it."""

    def __init__(self, samples: np.ndarray, name=None):
        self.samples = samples
        self.name = name
        self._speech: dict[tuple[str, int], np.ndarray] = {}

    def __str__(self) -> str:  # its path (what a gate or a message written for paths expects), or <waveform>
        return describe_source(self.name)

    @classmethod
    def of(cls, source, sample_rate: int = SAMPLE_RATE) -> Recording:
        """A file path read, a waveform array at `sample_rate` validated, a `Recording` as it is."""
        if isinstance(source, Recording):
            return source
        if isinstance(source, (str, os.PathLike)):
            return cls(read_audio(source), source)
        return cls(to_model_input(source, sample_rate))

    def at_rate(self, sample_rate: int) -> np.ndarray:
        """The samples at `sample_rate`."""
        return self.samples if sample_rate == SAMPLE_RATE else _resample(self.samples, SAMPLE_RATE, sample_rate)

    def speech(self, trim: str, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """The samples at `sample_rate` after `trim` (`trim_silence`), computed on first use."""
        key = (trim, sample_rate)
        if key not in self._speech:
            self._speech[key] = trim_silence(self.at_rate(sample_rate), trim, source=self.name)
        return self._speech[key]


def name_of(source):
    """What messages and refusal lists call a source: a path as given, a `Recording`'s name, else None (a waveform)."""
    if isinstance(source, Recording):
        return source.name
    return source if isinstance(source, (str, os.PathLike)) else None


def result_or_refusal(function, source, keep_refusals: bool):
    """`function(source)`; with `keep_refusals`, the `AudioError` that refuses the recording (no speech, too short,
    corrupt...) is returned instead of raised, so a batch can list it and go on. A missing file always raises: that
    is a wrong path, not bad audio."""
    try:
        return function(source)
    except AudioError as error:
        if not keep_refusals or isinstance(error, MissingAudioError):
            raise
        return error
