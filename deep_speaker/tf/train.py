"""The one training driver. Every phase is a configuration of it: classification pre-training, triplet, head (here),
the spoof and overlap detectors (here), AdvGAN (`tf/advgan.py`), AGAIN-VC (`tf/again_vc.py`) and PGD fine-tuning
(`tf/adversarial_training.py`).

Each run lives in `<working_dir>/<run>/`:
    last.keras     training model + optimizer(s) after the last finished epoch (resume point)
    best.keras     the best model so far (a speaker model, detector, generator or converter) by the phase's criterion
    state.json     epoch counter, best value and the recipe (also inside last.keras, which is what resuming reads: a
                   process killed between the two writes cannot pair a newer checkpoint with an older count)
    training.csv   one row of metrics per finished epoch; tensorboard/ for TensorBoard
Killed at any moment, the same command resumes from the last finished epoch; the log is cut back to
that epoch first. Resuming with another recipe is refused. Only the chief process writes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ..audio import FRAME_STEP
from ..checkpoints import assign_weights_by_name, save_model
from ..config import PHASE_DEFAULTS, SELECTION, Recipe, validate
from ..data.augment import SPEEDS, WaveformAugmentation, read_clip_folder
from ..data.batches import AugmentedBatches, ClassificationBatches, PrecomputedInputs, TripletBatches, targets
from ..data.split import SpeakerFeatures, SpeakerWaveforms
from ..errors import ConfigError, TrainingError
from ..fileio import atomic_save_npy, atomic_write_bytes
from ..layers import CosineLogits, L2Normalize
from ..losses import LOSSES, AAMSoftmaxLoss, MarginWarmup
from ..model_files import check_features, load_model
from ..model_home import find, user_home
from ..models import build_backbone, build_speaker_model
from ..models.heads import HEAD_TAPS, build_head
from ..models.speaker_model import backbone_of, base_of, build_fused, feature_model
from ..scoring import CosineScorer, all_pairs_eer
from .callbacks import BestModel, DetectionEER, EpochTimer, RefreshNegatives, ResumePoint, ValidationEER, checkpoint_state
from .distribute import distributed_stream, is_chief, num_workers, strategy, synchronise_batch_norm

RUN_DIRS = {"classification": "softmax", "triplet": "triplet"}
CONTINUABLE = {("run", "epochs"), ("run", "early_stopping_patience")}  # may change between a run and its resumption


@dataclass
class Phase:
    """What a phase hands the driver: a compiled training model, its batches and how to judge and export it."""

    trainer: keras.Model
    batches: keras.utils.PyDataset
    monitor: str
    mode: str
    export: Callable[[], keras.Model]
    callbacks: list = field(default_factory=list)
    validation_data: tuple | None = None


def reduce_lr_on_plateau(recipe: Recipe) -> keras.callbacks.ReduceLROnPlateau:
    """The learning rate cut by `reduce_lr_factor` after `reduce_lr_patience` epochs without progress in `select_by`."""
    optimiser, monitor = recipe.optimiser, recipe.run.select_by
    return keras.callbacks.ReduceLROnPlateau(
        monitor=monitor, mode=SELECTION[monitor], factor=optimiser.reduce_lr_factor, patience=optimiser.reduce_lr_patience
    )


def optimizer_of(recipe: Recipe, learning_rate: float | None = None, **options) -> keras.optimizers.Optimizer:
    """The recipe's optimiser at its learning rate (or `learning_rate`), with Keras optimiser `options`."""
    rate = learning_rate or recipe.optimiser.learning_rate
    return keras.optimizers.Adam(rate, **options) if recipe.optimiser.name == "adam" else keras.optimizers.SGD(rate, **options)


def _resume_state(run_dir: Path, recipe: Recipe) -> dict | None:
    state_path, checkpoint = run_dir / "state.json", run_dir / "last.keras"
    if not checkpoint.is_file():
        return None
    state = checkpoint_state(checkpoint)  # checkpoints written before the state moved inside: state.json
    if state is None:
        if not state_path.is_file():
            return None
        state = json.loads(state_path.read_text())
    before, now = state.get("recipe", {}), recipe.to_dict()
    defaults = PHASE_DEFAULTS[recipe.phase].to_dict()  # an option added since the run started had its default

    def earlier(group: str, key: str):
        return before.get(group, {}).get(key, defaults[group][key])

    changed = sorted(
        f"{group}.{key}: {earlier(group, key)!r} -> {value!r}"
        for group, values in now.items()
        if isinstance(values, dict)
        for key, value in values.items()
        if (group, key) not in CONTINUABLE and group != "features" and earlier(group, key) != value
    )  # the features are the cache's, which cannot change under a run (`_training_data` checks them against the recipe)
    if changed:
        raise ConfigError(
            f"{run_dir}: this run was started with other options ({'; '.join(changed)}); resume it with the same "
            "recipe, or start a new run in another working directory (or delete this run's folder)"
        )
    return state


def _cut_log(log: Path, epochs: int) -> None:
    """Keep only the rows of finished epochs (< `epochs`), so a resumed run never logs an epoch twice."""
    if not log.is_file():
        return
    with log.open(newline="") as handle:
        rows = list(csv.reader(handle))
    kept = [rows[0]] + [row for row in rows[1:] if row and int(row[0]) < epochs] if rows else []
    text = io.StringIO()
    csv.writer(text).writerows(kept)
    atomic_write_bytes(log, text.getvalue().encode())


def fit(run_dir: Path, recipe: Recipe, build: Callable[[dict | None], Phase], progress: bool = True, epochs: int | None = None) -> Path:
    """Build the phase (inside the strategy scope), train it with resume and chief-only writes; returns best.keras."""
    run_dir.mkdir(parents=True, exist_ok=True)
    state = _resume_state(run_dir, recipe)
    active = strategy(recipe.run.strategy)
    keras.utils.set_random_seed(recipe.run.seed)
    with active.scope():
        phase = build(state)
    synchronise_batch_norm(phase.trainer, active, recipe.run.sync_batch_norm)
    streamed = not isinstance(phase.batches, keras.utils.PyDataset)  # tf.data: endless, epochs of steps_per_epoch
    initial_epoch = state["epoch"] if state else 0
    best = BestModel(run_dir / "best.keras", phase.monitor, phase.mode, phase.export, state["best"] if state else None)
    writers = []
    if is_chief():
        _cut_log(run_dir / "training.csv", initial_epoch)
        writers = [
            keras.callbacks.CSVLogger(str(run_dir / "training.csv"), append=True),
            keras.callbacks.TensorBoard(str(run_dir / "tensorboard")),
        ]
    try:
        phase.trainer.fit(
            phase.batches,
            validation_data=phase.validation_data,
            epochs=epochs or recipe.run.epochs,
            steps_per_epoch=recipe.run.steps_per_epoch if streamed else None,
            shuffle=False,  # batches are random already, seeded by (seed, epoch, step): Keras' own reordering would not survive a resume
            initial_epoch=initial_epoch,
            verbose=1 if progress else 0,
            callbacks=[
                EpochTimer(),
                *phase.callbacks,
                best,
                keras.callbacks.EarlyStopping(monitor=phase.monitor, mode=phase.mode, patience=recipe.run.early_stopping_patience),
                *writers,
                ResumePoint(run_dir, best, recipe.to_dict()),
            ],
        )
    except tf.errors.OpError as error:
        if num_workers() == 1:
            raise
        finished = _resume_state(run_dir, recipe) or {"epoch": 0}
        raise TrainingError(
            f"{run_dir}: the cluster lost a worker ({str(error).strip().splitlines()[0]}); restart every worker with the "
            f"same command: training resumes after epoch {finished['epoch']}, the last one finished"
        ) from None
    if is_chief() and not best.path.is_file():
        raise TrainingError(
            f"{run_dir}: no epoch gave a finite {phase.monitor}, so there is no best model; "
            "check the learning rate and the data (training.csv has the losses)"
        )
    return best.path


def rebuilt(trainer: keras.Model, run_dir: Path, state: dict | None, optimised: list | None = None) -> keras.Model:
    """`trainer`, freshly built and compiled from the recipe, with its optimisers built (`optimised`: (optimiser,
    variables) pairs; default the trainer's own over all its trainable variables) and, when resuming (`state`), the
    weights and optimiser state of the run's last.keras. For trainers that hold a live verifier or data the file
    cannot: they are made again and filled, where the other phases deserialise theirs whole."""
    for optimiser, variables in optimised or [(trainer.optimizer, trainer.trainable_variables)]:
        optimiser.build(variables)
    if state:
        trainer.load_weights(run_dir / "last.keras")
    return trainer


def _model_options(recipe: Recipe) -> dict:
    return {"width": recipe.model.width, "embedding_dim": recipe.model.embedding_dim, "dropout": recipe.model.dropout}


def _on_features(inner: keras.Model, output: Callable, name: str) -> keras.Model:
    """inputs -> output(inner(inputs)): a model holding `inner` as one nested layer (so it can be found by name)."""
    inputs = keras.Input(inner.input.shape[1:], name="inputs")
    return keras.Model(inputs, output(inner(inputs)), name=name)


def _normalised(backbone: keras.Model) -> keras.Model:
    """features -> L2-normalised embedding of a backbone (what triplets and validation compare)."""
    return _on_features(backbone, lambda taps: L2Normalize(name="ln")(taps["embedding"]), "embedder")


def _compile(trainer: keras.Model, recipe: Recipe, learning_rate: float | None = None) -> keras.Model:
    spec = LOSSES[recipe.loss.name]
    loss, metrics = spec.loss(recipe.loss), spec.metrics(recipe.loss)
    if recipe.loss.distill_from:  # the classification loss on "classes", a cosine loss towards the teacher on "teacher"
        trainer.compile(
            optimizer=optimizer_of(recipe, learning_rate),
            loss={"classes": loss, "teacher": keras.losses.CosineSimilarity(name="distillation")},
            loss_weights={"classes": 1.0, "teacher": recipe.loss.distill_weight},
            metrics={"classes": metrics},
        )
    else:
        trainer.compile(optimizer=optimizer_of(recipe, learning_rate), loss=loss, metrics=metrics)
    return trainer


def _margin_callbacks(trainer: keras.Model, recipe: Recipe) -> list:
    """The margin warm-up of an AAM-softmax trainer, if the recipe asks for one."""
    losses = trainer.loss.values() if isinstance(trainer.loss, dict) else [trainer.loss]
    margin = next((loss for loss in losses if isinstance(loss, AAMSoftmaxLoss)), None)
    if recipe.loss.margin_warmup_epochs and margin is not None:
        return [MarginWarmup(margin, recipe.loss.margin_warmup_epochs)]
    return []


def teacher_embeddings(data: SpeakerFeatures, encoder, progress: bool = True) -> np.ndarray:
    """The teacher `encoder`'s embedding of every cached utterance (whole recordings, through its own front end),
    computed once and kept in the teacher's home, keyed by the digest of the cache's recordings in order."""
    from ..data.cache import read_manifest

    recordings = [str(entry.audio_path) for entry in read_manifest(data.working_dir)]
    name = f"teacher/{hashlib.sha256(chr(10).join(recordings).encode()).hexdigest()[:16]}.npy"
    path = find(encoder.fingerprint, name, legacy=data.working_dir / f"teacher_{encoder.fingerprint}.npy")
    if path is not None:
        return np.load(path)
    embeddings = encoder.embed_many(recordings, progress=progress)
    atomic_save_npy(user_home(encoder.fingerprint) / name, embeddings)
    return embeddings


def _training_data(working_dir, recipe: Recipe, augmented_copies: bool = False):
    """What a phase trains on: the feature cache in memory, or (`run.input: shards`) the shard index. The
    recipe's strategy is created first: a collective strategy must exist before any other TensorFlow work."""
    strategy(recipe.run.strategy)
    if recipe.run.input == "shards":
        from .shards import ShardedCorpus

        data = ShardedCorpus(working_dir)
    else:
        data = SpeakerFeatures(working_dir, recipe.run.validation_fraction, augmented_copies=augmented_copies)
    wanted = recipe.features.feature_config()
    if data.feature_config != wanted:
        held = data.feature_config
        raise ConfigError(
            f"{working_dir}: the cache holds {held.describe()} (trim {held.trim}), the recipe asks for {wanted.describe()} "
            f"(trim {wanted.trim}); state the cache's features in the recipe (features: {{trim: {held.trim}, energies: "
            f"{held.energies}, normalisation: {held.normalisation}}}) or cache the recipe's (build-features --recipe R) in a new "
            "working directory"
        )
    return data


def _shard_stream(data, recipe: Recipe, initial_epoch: int, crops_per_speaker: int = 0):
    """The sharded corpus streamed under the active strategy (`distribute.distributed_stream`); with
    `crops_per_speaker`, batches of several speakers x that many crops (within-batch mining)."""
    run = recipe.run
    pipelines = run.input_pipelines or num_workers()
    share = run.batch_size // pipelines
    if crops_per_speaker and share % crops_per_speaker:
        raise ConfigError(
            f"each input pipeline's share of the batch ({share}) must be a multiple of crops_per_speaker ({crops_per_speaker})"
        )

    def pipeline(index):
        speakers = share // crops_per_speaker if crops_per_speaker else 0
        return data.stream(run, initial_epoch, index, pipelines, recipe.augment.spec_augment, speakers)

    return distributed_stream(tf.distribute.get_strategy(), pipelines, pipeline, run.batch_size)


def _classification_batches(data: SpeakerFeatures, recipe: Recipe, initial_epoch: int, progress: bool, teacher=None):
    """Crops of cached features (with the teacher's targets when distilling), (`augment.waveform`) augmented
    waveform crops featurised on the fly, or (`run.input: shards`) the streamed shards."""
    aug, run = recipe.augment, recipe.run
    if run.input == "shards":
        return _shard_stream(data, recipe, initial_epoch)
    if not aug.waveform:
        return ClassificationBatches(data, run, initial_epoch, augment=aug.spec_augment, teacher=teacher)
    augmentation = WaveformAugmentation(
        noise_probability=aug.noise_probability,
        snr_db=(aug.snr_min_db, aug.snr_max_db),
        reverb_probability=aug.reverb_probability,
        channel_probability=aug.channel_probability,
    )
    clips = {"noise": read_clip_folder(aug.noise_dir), "rir": read_clip_folder(aug.rir_dir)}
    return AugmentedBatches(
        data,
        SpeakerWaveforms(data, progress),
        run,
        augmentation,
        SPEEDS if aug.speed_perturbation else (1.0,),
        clips["noise"],
        clips["rir"],
        initial_epoch,
        aug.spec_augment,
        run.workers,
    )


def _classification_phase(data: SpeakerFeatures, recipe: Recipe, trainer: keras.Model, batches, teacher=None) -> Phase:
    backbone = trainer.get_layer("backbone")
    export = build_speaker_model(backbone, data.feature_config)
    run = recipe.run
    monitor, mode = run.select_by, SELECTION[run.select_by]
    reduce_lr = reduce_lr_on_plateau(recipe)
    return Phase(
        trainer,
        batches,
        monitor,
        mode,
        lambda: export,
        [
            ValidationEER(data, run.num_frames, _normalised(backbone)),
            reduce_lr,
            *_margin_callbacks(trainer, recipe),
        ],  # val_eer first: the others may read it
        (data.crops(data.validation, run.num_frames, None), targets(data, data.validation, teacher)),
    )


def train_classifier(
    working_dir, recipe: Recipe, progress: bool = True, initial_checkpoint=None, run_name: str | None = None, teacher=None
) -> Path:
    """Softmax, AM- or AAM-softmax training of a registered backbone; returns the best speaker model (by
    `run.select_by`).

    From scratch by default. With `initial_checkpoint` (a speaker model of the same backbone and features) it
    fine-tunes: the backbone starts from its weights and each class direction of a margin classifier from its
    class's mean embedding, which is large-margin fine-tuning when the recipe raises the margin and the crop
    length. With `loss.distill_from` the `teacher` encoder's embeddings of the training recordings are learnt too
    (a linear projection of the student's embedding, cosine loss, `loss.distill_weight`): knowledge distillation
    from any model the toolkit loads (`assembly.load_teacher` opens it). `run_name` names the run folder under
    `working_dir` (default `softmax`).
    """
    validate(recipe)
    if initial_checkpoint is not None and recipe.run.input == "shards":
        raise ConfigError("fine-tuning from a checkpoint reads the feature cache (input: cache), not shards")
    data = _training_data(working_dir, recipe, recipe.augment.cached_copies)
    run_dir = Path(working_dir) / (run_name or RUN_DIRS["classification"])

    if bool(recipe.loss.distill_from) != (teacher is not None):
        raise ConfigError("a recipe with loss.distill_from trains with its teacher encoder (assembly.load_teacher), and only then")
    teacher = teacher_embeddings(data, teacher, progress) if teacher is not None else None

    def build(state):
        batches = _classification_batches(data, recipe, state["epoch"] if state else 0, progress, teacher)
        if state:
            trainer = keras.saving.load_model(run_dir / "last.keras")
        else:
            backbone = build_backbone(recipe.model.name, data.feature_config.num_fbanks, **_model_options(recipe))
            num_classes = getattr(batches, "num_classes", data.num_classes)
            classifier = LOSSES[recipe.loss.name].output(num_classes)

            def outputs(taps):
                if teacher is None:
                    return classifier(taps["embedding"])
                projection = keras.layers.Dense(teacher.shape[1], name="teacher_projection")(taps["embedding"])
                return {"classes": classifier(taps["embedding"]), "teacher": projection}

            trainer = _on_features(backbone, outputs, "classification")
            if initial_checkpoint is not None:
                _start_from(backbone, initial_checkpoint, data)
                if isinstance(classifier, CosineLogits):
                    classifier.directions.assign(_class_means(backbone, data, num_classes, recipe.run.num_frames))
            trainer = _compile(trainer, recipe)
        return _classification_phase(data, recipe, trainer, batches, teacher)

    return fit(run_dir, recipe, build, progress)


def _start_from(backbone: keras.Model, checkpoint, data: SpeakerFeatures) -> None:
    """Copy a speaker model's backbone weights into `backbone` (same architecture and features, else refused)."""
    pretrained = load_model(checkpoint)
    check_features(pretrained, data.feature_config, checkpoint)
    weights = {layer.name: layer.get_weights() for layer in backbone_of(pretrained).layers if layer.weights}
    assign_weights_by_name(backbone, weights, checkpoint)


def _class_means(backbone: keras.Model, data: SpeakerFeatures, num_classes: int, num_frames: int) -> np.ndarray:
    """(dim, classes): each class's mean unit embedding over its training utterances (first `num_frames`), unit length."""
    embeddings = _normalised(backbone).predict(data.crops(data.train, num_frames, None), batch_size=64, verbose=0)
    labels = data.labels[data.train]
    means = np.stack(
        [embeddings[labels == c].mean(axis=0) if np.any(labels == c) else np.zeros(embeddings.shape[1]) for c in range(num_classes)]
    )
    return (means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)).T


def train_triplet(working_dir, recipe: Recipe, initial_checkpoint=None, progress: bool = True) -> Path:
    """Hard-negative triplet training from a speaker model (default: the best classification model); returns
    the best speaker model (by validation EER)."""
    validate(recipe)
    data = _training_data(working_dir, recipe)
    run_dir = Path(working_dir) / RUN_DIRS["triplet"]
    initial_checkpoint = Path(initial_checkpoint or Path(working_dir) / RUN_DIRS["classification"] / "best.keras")

    def build(state):
        if state:
            trainer = keras.saving.load_model(run_dir / "last.keras")
        else:
            backbone = build_backbone(recipe.model.name, data.feature_config.num_fbanks, **_model_options(recipe))
            pretrained = load_model(initial_checkpoint)
            check_features(pretrained, data.feature_config, initial_checkpoint)
            weights = {layer.name: layer.get_weights() for layer in backbone_of(pretrained).layers if layer.weights}
            assign_weights_by_name(backbone, weights, initial_checkpoint)
            trainer = _compile(_normalised(backbone), recipe)
        backbone = trainer.get_layer("backbone")
        initial_epoch = state["epoch"] if state else 0
        if LOSSES[recipe.loss.name].batches == "speakers":
            batches, callbacks = _shard_stream(data, recipe, initial_epoch, recipe.loss.crops_per_speaker), []
        else:
            batches = TripletBatches(data, recipe.run, recipe.loss.negative_candidates, initial_epoch=initial_epoch)
            callbacks = [RefreshNegatives(batches)]
        export = build_speaker_model(backbone, data.feature_config)
        callbacks.append(ValidationEER(data, recipe.run.num_frames))
        return Phase(trainer, batches, "val_eer", "min", lambda: export, callbacks)

    return fit(run_dir, recipe, build, progress)


def tune_fusion_weight(base_embeddings: np.ndarray, head_embeddings: np.ndarray, labels: np.ndarray, scorer=None) -> tuple[float, float]:
    """(weight, EER) of score fusion w s(base) + (1 - w) s(head) minimising the all-pairs EER."""
    scorer = scorer or CosineScorer()
    base_scores = scorer.score_matrix(base_embeddings, base_embeddings)
    head_scores = scorer.score_matrix(head_embeddings, head_embeddings)
    results = [(all_pairs_eer(w * base_scores + (1 - w) * head_scores, labels), float(w)) for w in np.linspace(0, 1, 21)]
    eer, weight = min(results)
    return weight, eer


def _head_options(recipe: Recipe) -> dict:
    head = recipe.head
    if head.head == "dense":
        return {"hidden_units": (head.hidden_units, head.hidden_units), "dropout": head.dropout, "embedding_dim": head.embedding_dim}
    return {"channels": head.tdnn_channels, "embedding_dim": head.embedding_dim}


def _head_phase(data, recipe: Recipe, trainer: keras.Model, embedder: keras.Model, export) -> Phase:
    run, loss = recipe.run, recipe.loss
    if LOSSES[loss.name].batches == "triplet":
        batches = TripletBatches(data, run, loss.negative_candidates)
        callbacks = [RefreshNegatives(batches)]
    else:
        batches, callbacks = ClassificationBatches(data, run), _margin_callbacks(trainer, recipe)
    return Phase(trainer, batches, "val_eer", "min", export, [*callbacks, ValidationEER(data, run.num_frames, embedder)])


def train_head(working_dir, base_checkpoint, recipe: Recipe, progress: bool = True) -> dict[str, Path]:
    """Train a head on a frozen base (then optionally jointly); save one fused model per fusion mode.

    Returns {fusion mode: path}. The score-fusion weight is tuned on the held-out utterances of the
    training speakers, so a development trial list stays untouched for evaluation.
    """
    validate(recipe)
    data = SpeakerFeatures(working_dir, recipe.run.validation_fraction)
    run_dir = Path(working_dir) / f"head_{recipe.head.head}_{recipe.loss.name}"
    base = load_model(base_checkpoint)
    check_features(base, data.feature_config, base_checkpoint)
    base.trainable = False
    backbone = backbone_of(base)
    keras.utils.set_random_seed(recipe.run.seed)
    head = build_head(recipe.head.head, backbone, **_head_options(recipe))
    tap = HEAD_TAPS[recipe.head.head]
    input_model = base_of(base, from_features=True) if tap == "embedding" else _on_features(backbone, lambda taps: taps["frames"], "frames")
    inputs = PrecomputedInputs(data, input_model, recipe.head.crops_per_utterance, recipe.run)
    classes = len(data.speakers)

    def build_head_phase(state):
        if state:  # the trainer holds its own copy of the head; `head` takes the best weights after `fit`
            trainer = keras.saving.load_model(run_dir / "last.keras")
        else:
            trainer = _compile(_on_features(head, LOSSES[recipe.loss.name].output(classes), "head_training"), recipe)
        trained_head = trainer.get_layer(head.name)
        return _head_phase(inputs, recipe, trainer, trained_head, lambda: trained_head)

    best_head = fit(run_dir, recipe, build_head_phase, progress)
    head.set_weights(keras.saving.load_model(best_head).get_weights())

    if recipe.head.finetune_epochs:
        base.trainable = True
        joint = feature_model(build_fused(base, head, "head"))

        def build_finetune_phase(state):
            trainer = _compile(
                _on_features(joint, LOSSES[recipe.loss.name].output(classes), "joint_training"), recipe, recipe.head.finetune_learning_rate
            )
            return _head_phase(data, recipe, trainer, joint, lambda: head)

        best_head = fit(run_dir / "finetune", recipe, build_finetune_phase, progress, epochs=recipe.head.finetune_epochs)
        head.set_weights(keras.saving.load_model(best_head).get_weights())

    validation_crops = data.crops(data.validation, recipe.run.num_frames, None)
    head_only = feature_model(build_fused(base, head, "head"))
    weight, _ = tune_fusion_weight(
        base_of(base, from_features=True).predict(validation_crops, verbose=0),
        head_only.predict(validation_crops, verbose=0),
        data.labels[data.validation],
    )
    paths = {}
    for fusion in ("head", "concat", "score"):
        paths[fusion] = run_dir / f"fused_{fusion}.keras"
        if is_chief():
            save_model(build_fused(base, head, fusion, weight, trained=True), paths[fusion])
    if is_chief():
        summary = {"recipe": recipe.to_dict(), "fusion_weight": weight, "base": str(base_checkpoint)}
        atomic_write_bytes(run_dir / "head.json", json.dumps(summary, indent=2).encode())
    return paths


PHASES = {"classification": train_classifier, "triplet": train_triplet}


def train_detector(working_dir, manifest, recipe: Recipe, held_out=(), progress: bool = True, run_name: str = "detector") -> Path:
    """The spoof detector (`models.detector`) on a spoof manifest (`make-spoofs`): binary cross-entropy on balanced
    random crops, the best epoch by the validation speakers' detection EER; `held_out` families are never seen (for
    leave-one-family-out testing). Writes `best.keras` and, beside it, the decision threshold (`detector.json`:
    1 % of the validation speakers' genuine recordings rejected, each scored whole as the gate scores it)."""
    from ..adversarial.detector import recording_score, save_threshold
    from ..adversarial.spoofs import read_manifest
    from ..data.detection import DetectorBatches, SpoofClips, validation_speakers
    from ..models.detector import DETECTOR_FEATURES, build_detector

    validate(recipe)
    rows = read_manifest(manifest)
    clips = SpoofClips(rows, DETECTOR_FEATURES.trim, recipe.run.validation_fraction, tuple(held_out), recipe.run.seed)
    length = recipe.run.num_frames * FRAME_STEP
    run_dir = Path(working_dir) / run_name

    def batches(epoch: int) -> DetectorBatches:
        return DetectorBatches(clips, recipe.run.batch_size, length, recipe.run.steps_per_epoch, recipe.run.seed, epoch)

    validation = (clips.crops(clips.validation, length), clips.labels[clips.validation])
    best = fit(run_dir, recipe, _detector_build(run_dir, recipe, build_detector, batches, validation), progress)
    if is_chief():
        detector = keras.saving.load_model(best)
        speakers = validation_speakers(rows, recipe.run.validation_fraction, recipe.run.seed)
        genuine = [recording_score(detector, path) for path, speaker, family in rows if family == "genuine" and speaker in speakers]
        save_threshold(best, detector, genuine)
    return best


def train_overlap(working_dir, audio_dir, recipe: Recipe, progress: bool = True, run_name: str = "overlap") -> Path:
    """The overlapped-speech detector (`models.overlap`) on synthetic conversations of the speakers of `audio_dir`
    (a corpus folder, one subfolder per speaker): per-frame binary cross-entropy on crops under random noise floors
    (coloured noise, hum, babble of other training recordings, and the recipe's noise_dir and rir_dir), the best
    epoch by the frame-level detection EER on fixed crops of held-out speakers. Writes `best.keras`."""
    from tqdm import tqdm

    from ..audio import load_speech
    from ..data.conversations import NoiseSources, OverlapBatches
    from ..data.corpus import discover_utterances
    from ..models.overlap import build_overlap_detector

    validate(recipe)
    waveforms: dict[str, list] = {}
    for utterance in tqdm(discover_utterances(audio_dir), desc="recordings", unit="file", disable=not progress):
        waveforms.setdefault(utterance.speaker, []).append(load_speech(utterance.path, trim="reference"))
    speakers = sorted(waveforms)
    held_out = set(
        np.random.default_rng(recipe.run.seed).choice(
            speakers, size=max(2, round(recipe.run.validation_fraction * len(speakers))), replace=False
        )
    )
    if len(speakers) - len(held_out) < 3:
        raise ConfigError(
            f"{audio_dir}: the overlap detector needs at least 3 training speakers besides the {len(held_out)} held out, got {len(speakers)}"
        )

    recorded, rooms = read_clip_folder(recipe.augment.noise_dir), read_clip_folder(recipe.augment.rir_dir)

    def sources(names) -> NoiseSources:
        """The noise floors of a speaker set: babble of its own recordings, the recipe's noises and rooms."""
        return NoiseSources([w for speaker in names for w in waveforms[speaker]], recorded, rooms)

    training = {speaker: waveforms[speaker] for speaker in speakers if speaker not in held_out}
    validation = {speaker: waveforms[speaker] for speaker in held_out}
    length = recipe.run.num_frames * FRAME_STEP
    crops, labels = OverlapBatches(validation, sources(held_out), 64, length, 1, recipe.run.seed + 1)[0]
    run_dir = Path(working_dir) / run_name
    noise = sources(training)

    def batches(epoch: int) -> OverlapBatches:
        return OverlapBatches(training, noise, recipe.run.batch_size, length, recipe.run.steps_per_epoch, recipe.run.seed, epoch)

    return fit(run_dir, recipe, _detector_build(run_dir, recipe, build_overlap_detector, batches, (crops, labels)), progress)


def _detector_build(run_dir: Path, recipe: Recipe, build_model: Callable, batches: Callable, validation: tuple) -> Callable:
    """`fit`'s build step for a detector (spoof, overlap): resumed from last.keras, or built and compiled for binary
    cross-entropy on logits; `batches(epoch)` from the epoch it starts at; the best epoch by the detection EER on the
    fixed validation (inputs, labels)."""

    def build(state):
        if state:
            trainer = keras.saving.load_model(run_dir / "last.keras")
        else:
            trainer = build_model()
            trainer.compile(optimizer=optimizer_of(recipe), loss=keras.losses.BinaryCrossentropy(from_logits=True))
        return Phase(
            trainer,
            batches(state["epoch"] if state else 0),
            "val_eer",
            "min",
            lambda: trainer,
            [DetectionEER(*validation), reduce_lr_on_plateau(recipe)],
        )

    return build
