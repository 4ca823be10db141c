"""Training recipes, grouped by concern (model, loss, augment, optimiser, run, head), per phase.

A phase is a configuration of the one training driver: `classification` (softmax or AM-softmax
pre-training), `triplet`, `head`, `detector` (the spoof detector), `overlap` (diarization's overlapped-speech
detector), `advgan` (AdvGAN's generator), `again` (the AGAIN-VC converter) and `adversarial` (PGD fine-tuning). Its defaults are the reference's recipe. A YAML recipe is nested by
group (`model: {width: 0.25}`) or flat (`width: 0.25`, as command-line flags are); an unknown key is an
error, so a typo is never silently ignored. Precedence: phase defaults < YAML file < flags. Every
option is checked (names against the registries, numbers against their ranges) before any work starts.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import yaml

from .errors import ConfigError


@dataclass(frozen=True)
class ModelRecipe:
    """Backbone by registry name and its options. ResCNN width 1.0 is the published model."""

    name: str = "rescnn"
    width: float = 1.0
    embedding_dim: int = 512
    dropout: float = 0.0  # before the embedding layer, during training only


@dataclass(frozen=True)
class LossRecipe:
    name: str = "softmax"  # classification: softmax | amsoftmax | aamsoftmax; triplet: triplet; head: amsoftmax | aamsoftmax | triplet
    margin: float = 0.2  # AM-softmax cosine margin, AAM-softmax angular margin (radians), or the triplet margin
    scale: float = 30.0  # AM-softmax logit scale
    negative_candidates: int = 32  # triplet: random other-speaker utterances per anchor; the closest is its negative
    margin_warmup_epochs: int = 0  # AAM-softmax: the margin grows linearly from 0 over this many epochs
    distill_from: str = ""  # classification: a teacher model (.keras or .fusion.json) whose embeddings the student also learns
    distill_weight: float = 1.0  # weight of the cosine distillation loss next to the classification loss
    crops_per_speaker: int = 4  # batch_hard_triplet: a batch is batch_size / crops_per_speaker speakers x this many crops


@dataclass(frozen=True)
class AugmentRecipe:
    spec_augment: bool = False  # zero one band of up to 8 filterbanks and one span of up to 20 frames per crop
    cached_copies: bool = False  # also train on the cache's augmented copies (`augment-cache`): no per-step cost
    waveform: bool = False  # crop waveforms and augment them on the fly (below) instead of cropping cached features
    speed_perturbation: bool = False  # speeds 0.9 / 1.0 / 1.1, each speed its own speaker classes
    noise_probability: float = 0.6  # noise from noise_dir, babble of other training speakers, or coloured noise
    snr_min_db: float = 0.0
    snr_max_db: float = 20.0
    reverb_probability: float = 0.3  # a room response from rir_dir or a simulated room (RT60 0.2-0.8 s)
    channel_probability: float = 0.1  # MP3, Opus or the telephone band (Opus encoding costs ~50 ms a segment)
    noise_dir: str = ""  # folder of noise recordings (e.g. ../shared/data/noise); empty: coloured noise and babble
    rir_dir: str = ""  # folder of room impulse responses (e.g. ../shared/data/rir); empty: simulated rooms


@dataclass(frozen=True)
class OptimiserRecipe:
    name: str = "adam"  # adam | sgd
    learning_rate: float = 0.001
    reduce_lr_patience: int = 10  # halve (reduce_lr_factor) the rate after this many epochs without progress
    reduce_lr_factor: float = 0.5


@dataclass(frozen=True)
class RunRecipe:
    batch_size: int = 96
    num_frames: int = 160
    epochs: int = 1000
    steps_per_epoch: int = 100
    validation_fraction: float = 0.2
    early_stopping_patience: int = 20
    seed: int = 123
    workers: int = 1  # threads preparing batches ahead of the model (waveform augmentation)
    select_by: str = "val_accuracy"  # the best epoch: held-out accuracy or held-out verification EER (val_eer)
    input: str = "cache"  # cache: the feature cache in memory | shards: `build-shards` TFRecords streamed by tf.data
    shuffle_buffer: int = 2048  # shards: crops in the shuffle buffer (memory = buffer x crop size, whatever the corpus)
    input_pipelines: int = 0  # shards: each global batch drawn from this many file-disjoint streams; 0: one per worker
    strategy: str = "default"  # default (one device) | mirrored (the GPUs of one machine) | multi_worker (TF_CONFIG)
    sync_batch_norm: bool = False  # one-device batch norm computed as across replicas (always so under several)


@dataclass(frozen=True)
class HeadRecipe:
    """Refinement head on a frozen base, then optional joint fine-tuning at a lower rate."""

    head: str = "dense"  # dense | tdnn
    fusion: str = "score"  # head | concat | score: which fused model `train-head` reports
    embedding_dim: int = 128
    hidden_units: int = 512
    dropout: float = 0.2
    tdnn_channels: int = 512
    crops_per_utterance: int = 8  # the frozen base's outputs are precomputed for this many crops per utterance
    finetune_epochs: int = 0
    finetune_learning_rate: float = 0.0001


@dataclass(frozen=True)
class FeaturesRecipe:
    """The features the model trains on, which the feature cache (or shards) must hold: `build-features --recipe`
    builds them from here, and training refuses a cache that holds others. The defaults are the reference's."""

    trim: str = "reference"  # reference | energy | none
    energies: str = "linear"  # linear | log
    normalisation: str = "frame"  # frame | utterance

    def feature_config(self):
        from .features import FeatureConfig

        return FeatureConfig(trim=self.trim, energies=self.energies, normalisation=self.normalisation)


@dataclass(frozen=True)
class AdvGANRecipe:
    """AdvGAN against a frozen verifier: the perturbation's bound and what the generator trains on."""

    snr_db: float = 30.0  # the perturbation's level below the signal
    seconds: float = 3.0  # crop length
    per_speaker: int = 4  # recordings of each training speaker used (sources, and targets of the other speakers)
    gan_weight: float = 0.01  # the discriminator's realism loss next to -score


@dataclass(frozen=True)
class ConverterRecipe:
    """AGAIN-VC's size (the paper's is channels 256) and the segments it reconstructs."""

    segment_frames: int = 128  # log-mel frames per training segment
    channels: int = 128
    blocks: int = 6
    content_channels: int = 4
    alpha: float = 0.1  # the activation guidance's slope


@dataclass(frozen=True)
class PGDRecipe:
    """The attacker inside adversarial fine-tuning."""

    seconds: float = 2.0  # crop length
    snr_db: float = 30.0  # the attacker's budget below the signal
    pgd_steps: int = 3


GROUPS = {
    "features": FeaturesRecipe,
    "model": ModelRecipe,
    "loss": LossRecipe,
    "augment": AugmentRecipe,
    "optimiser": OptimiserRecipe,
    "run": RunRecipe,
    "head": HeadRecipe,
    "advgan": AdvGANRecipe,
    "converter": ConverterRecipe,
    "pgd": PGDRecipe,
}


@dataclass(frozen=True)
class Recipe:
    phase: str = "classification"
    features: FeaturesRecipe = field(default_factory=FeaturesRecipe)
    model: ModelRecipe = field(default_factory=ModelRecipe)
    loss: LossRecipe = field(default_factory=LossRecipe)
    augment: AugmentRecipe = field(default_factory=AugmentRecipe)
    optimiser: OptimiserRecipe = field(default_factory=OptimiserRecipe)
    run: RunRecipe = field(default_factory=RunRecipe)
    head: HeadRecipe = field(default_factory=HeadRecipe)
    advgan: AdvGANRecipe = field(default_factory=AdvGANRecipe)
    converter: ConverterRecipe = field(default_factory=ConverterRecipe)
    pgd: PGDRecipe = field(default_factory=PGDRecipe)

    def to_dict(self) -> dict:
        """The groups this phase uses, as nested plain data (what a YAML recipe and `state.json` hold)."""
        return {"phase": self.phase, **{group: asdict(getattr(self, group)) for group in PHASE_GROUPS[self.phase]}}


PHASE_GROUPS = {
    "classification": ("features", "model", "loss", "augment", "optimiser", "run"),
    "triplet": ("features", "model", "loss", "optimiser", "run"),
    "head": ("head", "loss", "optimiser", "run"),
    "detector": ("optimiser", "run"),
    "overlap": ("augment", "optimiser", "run"),  # augment: its noise_dir and rir_dir (the floors it trains under)
    "advgan": ("advgan", "optimiser", "run"),
    "again": ("converter", "optimiser", "run"),
    "adversarial": ("pgd", "loss", "optimiser", "run"),
}
# the detectors (spoof, overlap) have no loss to choose: binary cross-entropy on their logits
PHASE_LOSSES = {
    "classification": ("softmax", "amsoftmax", "aamsoftmax"),
    "triplet": ("triplet", "batch_hard_triplet"),
    "head": ("amsoftmax", "aamsoftmax", "triplet"),
    "adversarial": ("aamsoftmax",),
}
PHASE_DEFAULTS = {
    # reference: Adam, dropout 0.5, early stopping after 20 epochs, LR halved after 10
    "classification": Recipe("classification", model=ModelRecipe(dropout=0.5)),
    # reference: SGD, margin 0.1, batch 96 = 32 anchors + 32 positives + 32 negatives
    "triplet": Recipe(
        "triplet", loss=LossRecipe("triplet", margin=0.1), optimiser=OptimiserRecipe("sgd", 0.01), run=RunRecipe(select_by="val_eer")
    ),
    "head": Recipe(
        "head",
        loss=LossRecipe("amsoftmax", negative_candidates=16),
        run=RunRecipe(epochs=30, early_stopping_patience=8, select_by="val_eer"),
    ),
    # the spoof detector: binary cross-entropy on 3 s crops, balanced batches, best epoch by held-out detection EER
    "detector": Recipe(
        "detector",
        optimiser=OptimiserRecipe(reduce_lr_patience=3),
        run=RunRecipe(batch_size=32, num_frames=300, epochs=40, steps_per_epoch=60, early_stopping_patience=8, select_by="val_eer"),
    ),
    # the overlapped-speech detector: per-frame binary cross-entropy on 8 s crops of synthetic conversations, best
    # epoch by the held-out speakers' frame-level detection EER
    "overlap": Recipe(
        "overlap",
        optimiser=OptimiserRecipe(reduce_lr_patience=3),
        run=RunRecipe(batch_size=16, num_frames=800, epochs=30, steps_per_epoch=50, early_stopping_patience=6, select_by="val_eer"),
    ),
    # AdvGAN: Adam 1e-3, 12 epochs of 25 steps of 8 crops; the generator that best raises the target's score on fixed crops
    "advgan": Recipe(
        "advgan",
        run=RunRecipe(batch_size=8, epochs=12, steps_per_epoch=25, early_stopping_patience=12, seed=0, select_by="val_score"),
    ),
    # AGAIN-VC: the original's Adam with AMSGrad (clip 3), L1 reconstruction; the best epoch by held-out speakers' L1
    "again": Recipe(
        "again",
        optimiser=OptimiserRecipe(learning_rate=5e-4),
        run=RunRecipe(
            batch_size=32, epochs=20, steps_per_epoch=250, validation_fraction=0.1, early_stopping_patience=20, seed=0, select_by="val_loss"
        ),
    ),
    # PGD adversarial fine-tuning: AAM-softmax (margin 0.2, scale 30) on clean + attacked crops, Adam 1e-4
    "adversarial": Recipe(
        "adversarial",
        loss=LossRecipe("aamsoftmax"),
        optimiser=OptimiserRecipe(learning_rate=1e-4),
        run=RunRecipe(batch_size=16, epochs=15, steps_per_epoch=10, early_stopping_patience=15, seed=0, select_by="loss"),
    ),
}
OPTIMISERS = ("adam", "sgd")
SELECTION = {"val_accuracy": "max", "val_eer": "min", "val_score": "max", "val_loss": "min", "loss": "min"}  # which way is better
PHASE_SELECTION = {  # what each phase can choose its best epoch by
    "classification": ("val_accuracy", "val_eer"),
    "advgan": ("val_score",),  # the verifier's mean score for the target speakers on fixed perturbed crops
    "again": ("val_loss",),  # held-out speakers' reconstruction L1
    "adversarial": ("loss",),  # clean + attacked classification loss over the epoch (every speaker trains)
}
INPUTS = ("cache", "shards")
STRATEGIES = ("default", "mirrored", "multi_worker")


def flat_options(phase: str) -> dict[str, tuple[str, str, type, object]]:
    """{flag name: (group, field, type, default)} for a phase; a group's `name` is the flag of the group (`--model`)."""
    options = {}
    for group in PHASE_GROUPS[phase]:
        defaults = getattr(PHASE_DEFAULTS[phase], group)
        for f in fields(defaults):
            flag = group if f.name == "name" else f.name
            options[flag] = (group, f.name, type(getattr(defaults, f.name)), getattr(defaults, f.name))
    return options


def _resolve(phase: str, values: dict, source: str) -> dict[str, dict]:
    """Flat or nested `values` -> {group: {field: value}}; unknown keys raise."""
    options = flat_options(phase)
    grouped: dict[str, dict] = {}
    for key, value in values.items():
        if key in PHASE_GROUPS[phase] and isinstance(value, dict):
            group_fields = {f.name for f in fields(GROUPS[key])}
            unknown = sorted(set(value) - group_fields)
            if unknown:
                raise ConfigError(f"{source}: unknown option(s) {unknown} in {key}; known: {sorted(group_fields)}")
            grouped.setdefault(key, {}).update(value)
        elif key in options:
            group, name = options[key][:2]
            grouped.setdefault(group, {})[name] = value
        else:
            raise ConfigError(f"{source}: unknown option(s) {[key]}; known: {sorted(options)}")
    return grouped


def load_recipe(phase: str, path: str | Path | None = None, **overrides) -> Recipe:
    """The `phase` recipe from its defaults, then the YAML file at `path`, then flat non-None `overrides`."""
    if phase not in PHASE_GROUPS:
        raise ConfigError(f"unknown training phase {phase!r}; choose from {sorted(PHASE_GROUPS)}")
    recipe = PHASE_DEFAULTS[phase]
    layers = []
    if path is not None:
        path = Path(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read recipe ({error})") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a recipe is a mapping of option: value")
        if loaded.pop("phase", phase) != phase:
            raise ConfigError(f"{path}: a recipe for another phase than {phase!r}")
        layers.append(_resolve(phase, loaded, str(path)))
    layers.append(_resolve(phase, {k: v for k, v in overrides.items() if v is not None}, "command line"))
    for grouped in layers:
        for group, values in grouped.items():
            recipe = replace(recipe, **{group: _typed(replace(getattr(recipe, group), **values), group)})
    validate(recipe)
    return recipe


def recipe_features(path):
    """The FeatureConfig a YAML recipe (of a phase that trains on cached features) asks for: what `build-features
    --recipe` caches."""
    path = Path(path)
    try:
        phase = (yaml.safe_load(path.read_text()) or {}).get("phase", "classification")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError) as error:
        raise ConfigError(f"{path}: cannot read recipe ({error})") from error
    if phase not in PHASE_GROUPS or "features" not in PHASE_GROUPS[phase]:
        raise ConfigError(f"{path}: a {phase!r} recipe does not train on cached features")
    return load_recipe(phase, path).features.feature_config()


def _typed(group_recipe, group: str):
    """Coerce YAML numbers to each field's type (an int where a float is expected is fine; text is not)."""
    values = {}
    for f in fields(group_recipe):
        value, default = getattr(group_recipe, f.name), getattr(type(group_recipe)(), f.name)
        expected = type(default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise ConfigError(f"option {f.name} ({group}) must be {expected.__name__}, got {value!r}")
        values[f.name] = value
    return replace(group_recipe, **values)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(recipe: Recipe) -> Recipe:
    """Every enumerated option against its registry and every number against its range, before any work."""
    _validate_architecture(recipe)
    _validate_loss(recipe)
    _validate_run(recipe)
    _validate_augment(recipe.augment)
    _validate_adversarial(recipe)
    if "features" in PHASE_GROUPS[recipe.phase]:
        recipe.features.feature_config()  # its own checks: known trim, energies and normalisation
    return recipe


def _validate_architecture(recipe: Recipe) -> None:
    """The model and head groups: registered names, sizes in range."""
    from .layers import EmbeddingFusion
    from .models import BACKBONES
    from .models.heads import HEAD_BUILDERS
    from .models.registry import MAX_EMBEDDING_DIM, MAX_WIDTH

    phase = recipe.phase
    if "model" in PHASE_GROUPS[phase]:
        _check(recipe.model.name in BACKBONES, f"unknown model {recipe.model.name!r}; choose from {sorted(BACKBONES)}")
        _check(0 < recipe.model.width <= MAX_WIDTH, f"width must be > 0 and at most {MAX_WIDTH:g}, got {recipe.model.width}")
        _check(
            1 <= recipe.model.embedding_dim <= MAX_EMBEDDING_DIM,
            f"embedding_dim must be >= 1 and at most {MAX_EMBEDDING_DIM}, got {recipe.model.embedding_dim}",
        )
        _check(0 <= recipe.model.dropout < 1, f"dropout must be in [0, 1), got {recipe.model.dropout}")
    if phase == "head":
        head = recipe.head
        _check(head.head in HEAD_BUILDERS, f"unknown head {head.head!r}; choose from {sorted(HEAD_BUILDERS)}")
        _check(head.fusion in EmbeddingFusion.MODES, f"unknown fusion {head.fusion!r}; choose from {EmbeddingFusion.MODES}")
        for name in ("embedding_dim", "hidden_units", "tdnn_channels", "crops_per_utterance"):
            _check(getattr(head, name) >= 1, f"{name} must be >= 1, got {getattr(head, name)}")
        _check(0 <= head.dropout < 1, f"dropout must be in [0, 1), got {head.dropout}")
        _check(head.finetune_epochs >= 0, f"finetune_epochs must be >= 0, got {head.finetune_epochs}")
        _check(math.isfinite(head.finetune_learning_rate) and head.finetune_learning_rate > 0, "finetune_learning_rate must be > 0")


def _validate_loss(recipe: Recipe) -> None:
    """The loss (for its phase), distillation and the optimiser."""
    from .losses import LOSSES

    phase, loss, optimiser = recipe.phase, recipe.loss, recipe.optimiser
    if "loss" in PHASE_GROUPS[phase]:
        _check(loss.name in PHASE_LOSSES[phase], f"loss {loss.name!r} is not one of {PHASE_LOSSES[phase]} for {phase} training")
        _check(loss.name in LOSSES, f"unknown loss {loss.name!r}; choose from {sorted(LOSSES)}")
    _check(optimiser.name in OPTIMISERS, f"unknown optimiser {optimiser.name!r}; choose from {OPTIMISERS}")
    _check(phase != "again" or optimiser.name == "adam", "AGAIN-VC trains with the original's Adam (AMSGrad, gradients clipped at 3)")
    _check(math.isfinite(loss.margin) and loss.margin >= 0, f"margin must be >= 0, got {loss.margin}")
    _check(math.isfinite(loss.scale) and loss.scale > 0, f"scale must be > 0, got {loss.scale}")
    _check(loss.negative_candidates >= 1, f"negative_candidates must be >= 1, got {loss.negative_candidates}")
    _check(loss.margin_warmup_epochs >= 0, f"margin_warmup_epochs must be >= 0, got {loss.margin_warmup_epochs}")
    if loss.distill_from:
        _check(phase == "classification", "distill_from is for classification training")
        _check(Path(loss.distill_from).is_file(), f"distill_from {loss.distill_from!r}: no such teacher model")
        _check(recipe.run.select_by == "val_eer", "distillation selects its best epoch by val_eer (set select_by: val_eer)")
        _check(not recipe.augment.waveform, "distillation trains on cached features (and cached_copies), not on-the-fly waveforms")
    _check(math.isfinite(loss.distill_weight) and loss.distill_weight > 0, f"distill_weight must be > 0, got {loss.distill_weight}")
    _check(loss.name != "aamsoftmax" or loss.margin < 1.5, f"an angular margin is in radians (below pi/2), got {loss.margin}")
    _check(
        math.isfinite(optimiser.learning_rate) and optimiser.learning_rate > 0, f"learning_rate must be > 0, got {optimiser.learning_rate}"
    )
    _check(optimiser.reduce_lr_patience >= 1, f"reduce_lr_patience must be >= 1, got {optimiser.reduce_lr_patience}")
    _check(0 < optimiser.reduce_lr_factor < 1, f"reduce_lr_factor must be in (0, 1), got {optimiser.reduce_lr_factor}")


def _validate_run(recipe: Recipe) -> None:
    """Batches, epochs, selection, input and strategy, and what each loss needs of them."""
    phase, loss, run = recipe.phase, recipe.loss, recipe.run
    minimum_batch = 3 if loss.name == "triplet" else 1
    _check(run.batch_size >= minimum_batch, f"batch_size must be >= {minimum_batch}, got {run.batch_size}")
    _check(run.num_frames >= 16, f"num_frames must be >= 16 (the backbone downsamples time by 16), got {run.num_frames}")
    _check(run.epochs >= 1, f"epochs must be >= 1, got {run.epochs}")
    _check(run.steps_per_epoch >= 1, f"steps_per_epoch must be >= 1, got {run.steps_per_epoch}")
    _check(0 < run.validation_fraction < 1, f"validation_fraction must be in (0, 1), got {run.validation_fraction}")
    _check(run.early_stopping_patience >= 1, f"early_stopping_patience must be >= 1, got {run.early_stopping_patience}")
    _check(run.workers >= 1, f"workers must be >= 1, got {run.workers}")
    _check(0 <= run.seed < 2**32, f"seed must be 0 to 2^32 - 1, got {run.seed}")
    _check(run.select_by in SELECTION, f"select_by must be one of {sorted(SELECTION)}, got {run.select_by!r}")
    choices = PHASE_SELECTION.get(phase, ("val_eer",))
    _check(
        run.select_by in choices,
        f"select_by must be one of {list(choices)} for {phase} training, got {run.select_by!r}"
        if len(choices) > 1
        else f"{phase} training selects its best epoch by {choices[0]} only, got {run.select_by!r}",
    )
    _check(run.input in INPUTS, f"input must be one of {INPUTS}, got {run.input!r}")
    _check(run.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}, got {run.strategy!r}")
    _check(run.shuffle_buffer >= 1, f"shuffle_buffer must be >= 1, got {run.shuffle_buffer}")
    _check(run.input_pipelines >= 0, f"input_pipelines must be >= 0 (0: one per worker), got {run.input_pipelines}")
    if run.input == "shards":
        _check(phase in ("classification", "triplet"), f"{phase} training reads the feature cache (input: cache)")
        _check(
            not (recipe.augment.waveform or recipe.augment.cached_copies or loss.distill_from),
            "input: shards streams cached features: "
            "no waveform augmentation, cached_copies or distillation (add augmented recordings to the corpus you shard instead)",
        )
    _check(loss.crops_per_speaker >= 2, f"crops_per_speaker must be >= 2 (a positive per crop), got {loss.crops_per_speaker}")
    _check(
        not (phase == "triplet" and run.input == "shards" and loss.name == "triplet"),
        "triplet training on shards mines within batches: use loss batch_hard_triplet",
    )
    if loss.name == "batch_hard_triplet":
        _check(run.input == "shards", "batch_hard_triplet mines within streamed batches: set input: shards (the cache uses triplet)")
        _check(
            run.batch_size % loss.crops_per_speaker == 0,
            f"batch_size ({run.batch_size}) must be a multiple of crops_per_speaker ({loss.crops_per_speaker})",
        )


def _validate_augment(aug: AugmentRecipe) -> None:
    """Probabilities, the SNR range and the noise and room folders."""
    for name in ("noise_probability", "reverb_probability", "channel_probability"):
        _check(0 <= getattr(aug, name) <= 1, f"{name} must be in [0, 1], got {getattr(aug, name)}")
    _check(aug.snr_min_db <= aug.snr_max_db, f"snr_min_db ({aug.snr_min_db}) must not exceed snr_max_db ({aug.snr_max_db})")
    for name in ("noise_dir", "rir_dir"):
        _check(not getattr(aug, name) or Path(getattr(aug, name)).is_dir(), f"{name} {getattr(aug, name)!r} is not a folder")


def _validate_adversarial(recipe: Recipe) -> None:
    """AdvGAN, AGAIN-VC and PGD: bounds, lengths and sizes."""
    advgan, converter, pgd = recipe.advgan, recipe.converter, recipe.pgd
    for name, value in (("advgan snr_db", advgan.snr_db), ("pgd snr_db", pgd.snr_db)):
        _check(math.isfinite(value) and 0 <= value <= 120, f"{name} must be in [0, 120] dB, got {value}")
    for name, value in (("advgan seconds", advgan.seconds), ("pgd seconds", pgd.seconds)):
        _check(math.isfinite(value) and 0.1 <= value <= 60, f"{name} must be in [0.1, 60], got {value}")
    _check(advgan.per_speaker >= 1, f"per_speaker must be >= 1, got {advgan.per_speaker}")
    _check(math.isfinite(advgan.gan_weight) and 0 <= advgan.gan_weight <= 1e6, f"gan_weight must be in [0, 1e6], got {advgan.gan_weight}")
    _check(converter.segment_frames >= 8, f"segment_frames must be >= 8, got {converter.segment_frames}")
    for name in ("channels", "blocks", "content_channels"):
        _check(1 <= getattr(converter, name) <= 4096, f"{name} must be 1 to 4096, got {getattr(converter, name)}")
    _check(math.isfinite(converter.alpha) and converter.alpha > 0, f"alpha must be > 0, got {converter.alpha}")
    _check(1 <= pgd.pgd_steps <= 1000, f"pgd_steps must be 1 to 1000, got {pgd.pgd_steps}")
