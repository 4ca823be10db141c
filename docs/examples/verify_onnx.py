"""Same speaker? A standalone export (`deep-speaker export M system.onnx --format onnx --standalone`) with ONNX Runtime alone."""

import json
import sys

import numpy as np
import onnxruntime
import soundfile
import soxr

session = onnxruntime.InferenceSession(sys.argv[1])
calibration = json.loads(session.get_modelmeta().custom_metadata_map["deep_speaker"])["calibration"]


def embed(path):  # the graph takes one recording at 16 kHz, mono, float32, and trims it itself
    waveform, rate = soundfile.read(path, dtype="float32", always_2d=True)
    waveform = soxr.resample(waveform.mean(axis=1), rate, 16000, quality="HQ") if rate != 16000 else waveform.mean(axis=1)
    return session.run(["embedding"], {"waveform": waveform})[0][0]


score = float(np.dot(embed(sys.argv[2]), embed(sys.argv[3])))
same = score >= calibration["far1"]  # the threshold letting 1 % of impostors through on the calibration trials
print(f"score = {score:.4f}  threshold = {calibration['far1']:.4f}  decision: {'same speaker' if same else 'different speakers'}")
