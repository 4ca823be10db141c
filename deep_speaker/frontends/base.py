"""The front-end contract: what one toolkit's front end provides, in one module per front end."""

from __future__ import annotations

import numpy as np


class FrontEnd:
    """How a (trimmed) waveform becomes model input, as a NumPy oracle (feature cache, tests) and as graph
    operations (`layers.Fbank`: waveform-in models, export, attacks), which must agree. `config` is a
    `features.FeatureConfig` of this `kind`."""

    kind: str
    takes_options = False  # whether energies, normalisation and the sample rate may differ from the defaults

    def describe(self, config) -> str:
        """In words, for error messages."""
        raise NotImplementedError

    def compute(self, signal: np.ndarray, config) -> np.ndarray:
        """The oracle: (frames, num_fbanks) float32 features of a trimmed waveform."""
        raise NotImplementedError

    def constants(self, config, precision: str) -> dict[str, np.ndarray]:
        """The matrices the graph multiplies by (DFT basis, filters), in `precision`."""
        raise NotImplementedError

    def graph(self, samples, constants: dict, config, precision: str):
        """The oracle in `keras.ops`: float32 waveforms (batch, samples) -> float32 features (batch, frames, bands)."""
        raise NotImplementedError

    def num_frames(self, num_samples: int | None) -> int | None:
        """Frames of a waveform of `num_samples` (None where it is not known before the data)."""
        return None
