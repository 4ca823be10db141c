"""Run every saved model in a folder on the current Keras backend: `python -m tests.models.backend_outputs DIR`.

Reads DIR/*.keras and their inputs (DIR/inputs.npz, keys `MODEL/INDEX`), writes DIR/outputs_<backend>.npz (key
MODEL). The backend test runs it under JAX and compares with TensorFlow, in a process of its own because the
Keras backend is chosen once per process.
"""

import sys
from pathlib import Path

import keras
import numpy as np


def load_all_models():
    """Import every module that registers serialisable layers, so any saved model of the toolkit loads."""
    from deep_speaker import layers, models  # noqa: F401
    from deep_speaker.models import advgan, again_vc, detector, ensemble, heads  # noqa: F401


def run_models(folder: Path) -> dict[str, np.ndarray]:
    load_all_models()
    inputs = np.load(folder / "inputs.npz")
    outputs = {}
    for path in sorted(folder.glob("*.keras")):
        model = keras.saving.load_model(path)
        arrays = [inputs[f"{path.stem}/{index}"] for index in range(len(model.inputs))]
        try:  # predict_on_batch, as the encoder calls models: compiled (jax.jit on JAX), where shapes are static
            outputs[path.stem] = np.asarray(model.predict_on_batch(arrays[0] if len(arrays) == 1 else arrays))
        except Exception as error:
            raise RuntimeError(f"{path.name} fails on {keras.backend.backend()}: {error}") from error
    return outputs


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    np.savez(folder / f"outputs_{keras.backend.backend()}.npz", **run_models(folder))
