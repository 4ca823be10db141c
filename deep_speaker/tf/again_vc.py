"""AGAIN-VC training (the model: `models/again_vc.py`), phase `again` of the one driver (`tf/train.fit`: resume,
logs, best model, early stopping): self-reconstruction with an L1 loss, as the original.

Each step draws `batch_size` random segments of `segment_frames` log-mel frames from the training speakers'
recordings and reconstructs each from its own content and the statistics of the same segment with its halves
swapped (so the statistics carry no timing). The last `validation_fraction` of each speaker's recordings are held
out; their reconstruction L1 on fixed segments (`val_loss`) chooses the best epoch, so a recipe is chosen on
training speakers only. Adam with AMSGrad, global gradient norm clipped at 3 (the original's settings);
`best.keras` is the converter.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
from tqdm import tqdm

from ..adversarial.conversion import MEL, log_mel
from ..audio import SAMPLE_RATE, read_audio
from ..config import Recipe, validate
from ..data.corpus import recordings_by_speaker
from ..data.crops import MelSegments, reconstruction_pairs
from ..data.split import held_out_count
from ..errors import DatasetError
from ..features import crop_or_pad
from ..models.again_vc import build_again_vc
from .train import Phase, fit, optimizer_of, rebuilt, reduce_lr_on_plateau


def _spectrograms(paths, frames: int, progress: bool, what: str) -> list[np.ndarray]:
    mels = [log_mel(read_audio(path)) for path in tqdm(paths, desc=what, disable=not progress, unit="file")]
    return [mel for mel in mels if mel.shape[0] >= frames]


def train_again(working_dir, audio_dir, recipe: Recipe, progress: bool = True, run_name: str = "again") -> Path:
    """Train an AGAIN-VC converter on the recordings of `audio_dir` (training speakers, never evaluation ones);
    returns the run's best.keras (the converter)."""
    validate(recipe)
    size, run = recipe.converter, recipe.run
    by_speaker = recordings_by_speaker(audio_dir, 2, "AGAIN-VC training (many voices)")
    held_out = {speaker: held_out_count(len(files), run.validation_fraction) for speaker, files in by_speaker.items()}
    frames = size.segment_frames
    training = _spectrograms(
        [p for s, files in by_speaker.items() for p in files[: len(files) - held_out[s]]], frames, progress, "training recordings"
    )
    validation = _spectrograms(
        [p for s, files in by_speaker.items() for p in files[len(files) - held_out[s] :]], frames, progress, "validation recordings"
    )
    seconds = frames * MEL["hop_length"] / SAMPLE_RATE
    for name, spectrograms in (("training", training), ("held-out", validation)):
        if not spectrograms:
            raise DatasetError(
                f"{audio_dir}: no {name} recording is as long as a segment ({frames} frames, {seconds:.1f} s)"
                + ("; raise validation_fraction or add recordings" if name == "held-out" else "")
            )
    fixed = np.random.default_rng(run.seed)
    validation_data = reconstruction_pairs(np.stack([crop_or_pad(mel, frames, fixed) for mel in validation]))
    run_dir = Path(working_dir) / run_name

    def build(state):
        converter = build_again_vc(MEL["n_mels"], size.channels, size.content_channels, size.blocks, size.alpha)
        converter.compile(optimizer=optimizer_of(recipe, amsgrad=True, global_clipnorm=3.0), loss=keras.losses.MeanAbsoluteError())
        rebuilt(converter, run_dir, state)
        batches = MelSegments(training, run.batch_size, frames, run.steps_per_epoch, run.seed, state["epoch"] if state else 0)
        return Phase(
            converter, batches, "val_loss", "min", lambda: converter, [reduce_lr_on_plateau(recipe)], validation_data=validation_data
        )

    return fit(run_dir, recipe, build, progress)
