"""Waveform-in export (ONNX, TFLite, SavedModel): parity with Keras, metadata, quantisation, and refusals."""

import json
import os

import numpy as np
import pytest
import soundfile as sf

from deep_speaker.assembly import load_encoder
from deep_speaker.embedding import SpeakerEncoder
from deep_speaker.errors import CheckpointError, ConfigError
from deep_speaker.exported import OnnxSpeakerModel, onnx_cache_path, read_metadata, sidecar
from deep_speaker.features import FeatureConfig
from deep_speaker.models import model_fingerprint
from deep_speaker.tf import export
from deep_speaker.tf.export import PARITY_BOUND, export_model
from tests.helpers import cli_in_process, save_tiny_model, synthetic_speech, tiny_model

TARGETS = {"onnx": "model.onnx", "tflite": "model.tflite", "savedmodel": "model_savedmodel"}
BACKBONES = {  # every registered backbone, with the front ends they are used with
    "rescnn": {"backbone": "rescnn", "width": 0.0625},
    "ecapa_tdnn": {"backbone": "ecapa_tdnn", "width": 0.0625, "features": FeatureConfig(kind="speechbrain", num_fbanks=80, trim="none")},
    "xvector": {"backbone": "xvector", "width": 0.0625, "features": FeatureConfig(energies="log", normalisation="utterance")},
    "ge2e": {"backbone": "ge2e", "width": 0.125, "features": FeatureConfig(kind="resemblyzer", num_fbanks=40, trim="none")},
}


def _keras_and_exported(model, path, waveforms):
    from deep_speaker.exported import load_exported

    runner = load_exported(path)
    expected = np.concatenate([np.asarray(model.predict_on_batch(w[None])) for w in waveforms])
    found = np.concatenate([runner(w[None]) for w in waveforms])
    return expected, found


def test_an_onnx_export_runs_without_keras_and_matches_it(tmp_path, speech_file):
    model = tiny_model()
    metadata = export_model(model, tmp_path / "tiny.onnx", "onnx")
    assert metadata.fingerprint == model_fingerprint(model) and metadata.max_abs_difference <= PARITY_BOUND["onnx"]
    assert read_metadata(tmp_path / "tiny.onnx") == metadata  # the recipe travels inside the file
    keras_encoder, onnx_encoder = SpeakerEncoder(model=model), load_encoder(tmp_path / "tiny.onnx")
    assert onnx_encoder.runtime == "onnx" and onnx_encoder.speaker_model is None
    assert onnx_encoder.fingerprint == keras_encoder.fingerprint  # calibrations and enrolments carry over
    np.testing.assert_allclose(onnx_encoder.embed(speech_file), keras_encoder.embed(speech_file), atol=1e-4)
    waveforms = [synthetic_speech(s, seed=k) for k, s in enumerate((0.7, 2.3, 5.1))]  # any length
    expected, found = _keras_and_exported(model, tmp_path / "tiny.onnx", waveforms)
    np.testing.assert_allclose(found, expected, atol=1e-4)


@pytest.mark.slow
def test_runtime_onnx_exports_a_keras_checkpoint_once_and_reuses_it(tmp_path, speech_file, private_home):
    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    first = load_encoder(checkpoint, runtime="onnx")
    cached = onnx_cache_path(checkpoint)
    stamp = cached.stat().st_mtime_ns
    second = load_encoder(checkpoint, runtime="onnx")
    assert cached.stat().st_mtime_ns == stamp and second.runtime == "onnx"
    keras_encoder = SpeakerEncoder(checkpoint)
    assert first.fingerprint == second.fingerprint == keras_encoder.fingerprint  # calibrations and stores carry over
    np.testing.assert_allclose(second.embed(speech_file), keras_encoder.embed(speech_file), atol=1e-4)
    with pytest.raises(ConfigError, match="unknown runtime 'torch'"):
        load_encoder(checkpoint, runtime="torch")
    with pytest.raises(ConfigError, match="crop_frames needs the Keras runtime"):
        load_encoder(checkpoint, runtime="onnx", crop_frames=160)
    import subprocess
    import sys

    from tests.helpers import ROOT

    script = (  # a later process finds the cached copy by the file's digest: ONNX Runtime alone, no TensorFlow
        "import sys; from deep_speaker.cli import main; code = main(sys.argv[1:]); "
        "print('tensorflow loaded' if 'tensorflow' in sys.modules else 'no tensorflow'); sys.exit(code)"
    )
    verify = ["verify", speech_file, speech_file, "--checkpoint_file", checkpoint, "--runtime", "onnx", "--threshold", "0.5"]
    result = subprocess.run([sys.executable, "-c", script, *map(str, verify)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "same speaker" in result.stdout, result.stderr
    assert result.stdout.strip().endswith("no tensorflow") and "exporting it once" not in result.stderr


# Every format on the backbones no other test exports: ECAPA-TDNN is the shipped model (all three formats on dev
# speech below) and GE2E the imported Resemblyzer encoder (ONNX and TFLite below); a new registered backbone must
# be added here or there.
BACKBONE_FORMATS = [("rescnn", "onnx"), ("rescnn", "tflite"), ("xvector", "onnx"), ("xvector", "savedmodel")]
COVERED_ELSEWHERE = {"ecapa_tdnn", "ge2e"}


def test_every_registered_backbone_has_an_export_test():
    assert {name for name, _ in BACKBONE_FORMATS} | COVERED_ELSEWHERE == set(BACKBONES)


@pytest.mark.slow
@pytest.mark.parametrize("backbone,model_format", BACKBONE_FORMATS)
def test_every_backbone_exports_within_its_bound(tmp_path, backbone, model_format):
    options = dict(BACKBONES[backbone])
    model = tiny_model(embedding_dim=16, **options)
    target = tmp_path / TARGETS[model_format]
    metadata = export_model(model, target, model_format)
    waveforms = [synthetic_speech(1.9, seed=3), synthetic_speech(4.2, pitch=180, seed=4)]
    expected, found = _keras_and_exported(model, target, waveforms)
    np.testing.assert_allclose(found, expected, atol=PARITY_BOUND[model_format])
    assert metadata.feature_config == model.get_layer("fbank").feature_config
    if model_format != "onnx":
        assert json.loads(sidecar(target).read_text())["fingerprint"] == model_fingerprint(model)


@pytest.mark.slow
@pytest.mark.parametrize("model_format,quantisation", [("tflite", "float16"), ("tflite", "int8"), ("onnx", "int8")])
def test_quantised_variants_are_their_own_models_and_report_their_cosine(tmp_path, model_format, quantisation):
    model = tiny_model(backbone="xvector", width=0.25, embedding_dim=32, features=FeatureConfig(energies="log", normalisation="utterance"))
    target = tmp_path / TARGETS[model_format]
    metadata = export_model(model, target, model_format, quantisation)
    assert metadata.fingerprint == f"{model_fingerprint(model)}-{quantisation}"  # never mistaken for the float model
    assert metadata.quantisation == quantisation and 0.5 < metadata.min_cosine <= 1.0 + 1e-6
    if model_format == "tflite":  # weights and front-end matrices stored in half the bytes or fewer
        export_model(model, tmp_path / "float.tflite", "tflite")
        assert os.path.getsize(target) < 0.6 * os.path.getsize(tmp_path / "float.tflite")


@pytest.mark.slow
def test_a_drifting_export_is_refused_and_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setitem(export.PARITY_BOUND, "onnx", -1.0)  # any difference, even none, is too much
    with pytest.raises(CheckpointError, match=r"model.onnx: the onnx export differs from the Keras model by .* not written"):
        export_model(tiny_model(), tmp_path / "model.onnx", "onnx")
    assert list(tmp_path.iterdir()) == []


def test_impossible_exports_are_refused_before_any_work(tmp_path):
    model = tiny_model()
    with pytest.raises(ConfigError, match="unknown export format 'coreml'"):
        export_model(model, tmp_path / "m.mlmodel", "coreml")
    with pytest.raises(ConfigError, match="savedmodel export has no float16 variant"):
        export_model(model, tmp_path / "sm", "savedmodel", "float16")
    with pytest.raises(ConfigError, match=r"onnx export has no float16 variant \(quantisations for onnx: int8\)"):
        export_model(model, tmp_path / "m.onnx", "onnx", "float16")
    with pytest.raises(ConfigError, match=r"a tflite export is written to NAME.tflite"):
        export_model(model, tmp_path / "m.onnx", "tflite")
    (tmp_path / "taken.onnx").write_bytes(b"keep me")
    with pytest.raises(ConfigError, match="taken.onnx exists; pass force=True"):
        export_model(model, tmp_path / "taken.onnx", "onnx")
    assert (tmp_path / "taken.onnx").read_bytes() == b"keep me"


def test_broken_or_foreign_exported_files_are_named_in_the_error(tmp_path):
    (tmp_path / "corrupt.onnx").write_bytes(b"\x08\x01garbage" * 10)
    with pytest.raises(CheckpointError, match="corrupt.onnx: not a readable ONNX model"):
        load_encoder(tmp_path / "corrupt.onnx")
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    with pytest.raises(CheckpointError, match="foreign.onnx: an ONNX model without deep-speaker metadata"):
        OnnxSpeakerModel(tmp_path / "foreign.onnx")
    (tmp_path / "lonely.tflite").write_bytes(b"TFL3")
    with pytest.raises(CheckpointError, match=r"lonely.tflite: its metadata .*lonely.tflite.json is missing"):
        load_encoder(tmp_path / "lonely.tflite")


def test_the_export_command_writes_a_parity_checked_file_and_refuses_a_fusion(tmp_path, capsys):
    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    done = cli_in_process(capsys, "export", checkpoint, tmp_path / "tiny.onnx", "--format", "onnx")
    assert done.returncode == 0, done.stderr
    assert "waveform (batch, samples) at 16000 Hz -> embedding (16); trim before it: reference" in done.stdout
    assert "parity with Keras on probe waveforms: max |difference|" in done.stdout
    again = cli_in_process(capsys, "export", checkpoint, tmp_path / "tiny.onnx", "--format", "onnx")
    assert again.returncode == 2 and "exists; pass force=True (--force)" in again.stderr
    fusion = tmp_path / "two.fusion.json"
    fusion.write_text("{}")
    refused = cli_in_process(capsys, "export", fusion, tmp_path / "two.onnx", "--format", "onnx")
    assert refused.returncode == 2 and "a fusion exports as one graph with --standalone" in refused.stderr
    both = cli_in_process(capsys, "export", checkpoint, tmp_path / "x.tflite", "--format", "tflite", "--float16", "--int8")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr


@pytest.mark.slow
def test_the_shipped_model_exports_within_the_bounds_on_dev_recordings(tmp_path, shared_data):
    """The parity the deployment issue asks for, on real speech: ONNX and SavedModel 1e-4, TFLite 1e-3."""
    from deep_speaker.audio import load_speech
    from deep_speaker.embedding import DEFAULT_CHECKPOINT
    from deep_speaker.model_files import load_model

    model = load_model(DEFAULT_CHECKPOINT)
    files = sorted((shared_data / "speechocean762" / "dev").rglob("*.flac"))[::120][:4]
    assert len(files) == 4
    waveforms = [load_speech(f, "reference", 16000) for f in files]
    for model_format, target in TARGETS.items():
        export_model(model, tmp_path / target, model_format)
        expected, found = _keras_and_exported(model, tmp_path / target, waveforms)
        np.testing.assert_allclose(found, expected, atol=PARITY_BOUND[model_format], err_msg=model_format)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind,checkpoint,formats",
    [
        ("resemblyzer", "resemblyzer/pretrained.pt", ("onnx", "tflite")),
        ("speechbrain", "speechbrain/ecapa_embedding_model.ckpt", ("onnx",)),
        ("speechbrain", "speechbrain/xvector_embedding_model.ckpt", ("tflite",)),
    ],
)
def test_imported_models_export_with_their_front_ends(tmp_path, pytorch_fixtures, kind, checkpoint, formats):
    """GE2E (LSTM, partial windows, Resemblyzer's mel) and SpeechBrain conversions (their Fbank and mean norm)."""
    from deep_speaker.importers import import_model

    model = import_model(kind, pytorch_fixtures / checkpoint)
    waveforms = [synthetic_speech(2.7, pitch=140, seed=5), synthetic_speech(1.1, pitch=200, seed=6)]
    for model_format in formats:
        target = tmp_path / TARGETS[model_format]
        export_model(model, target, model_format)
        expected, found = _keras_and_exported(model, target, waveforms)
        np.testing.assert_allclose(found, expected, atol=PARITY_BOUND[model_format], err_msg=f"{checkpoint} {model_format}")


def _onnx_with(path, target, weights=None, metadata_edit=None):
    """A copy of the ONNX export at `path` with its largest initializer replaced by random values, or its metadata's
    JSON edited by `metadata_edit(dict)`; everything else kept (the attack of hardening issue 26)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path))
    if weights is not None:
        largest = max(graph.graph.initializer, key=lambda tensor: int(np.prod(tensor.dims)))
        values = numpy_helper.to_array(largest)
        random = np.random.default_rng(weights).standard_normal(values.shape).astype(values.dtype)
        largest.CopyFrom(numpy_helper.from_array(random, largest.name))
    if metadata_edit is not None:
        entry = next(p for p in graph.metadata_props if p.key == "deep_speaker")
        fields = json.loads(entry.value)
        metadata_edit(fields)
        entry.value = json.dumps(fields)
    onnx.save(graph, str(target))
    return target


@pytest.mark.slow
def test_an_export_whose_weights_or_metadata_changed_is_refused(tmp_path, speech_file):
    model = tiny_model()
    original = tmp_path / "tiny.onnx"
    export_model(model, original, "onnx")
    assert load_encoder(original).fingerprint == model_fingerprint(model)
    swapped = _onnx_with(original, tmp_path / "swapped.onnx", weights=1)
    with pytest.raises(CheckpointError, match=r"swapped.onnx: the model's graph or metadata changed after export"):
        load_encoder(swapped)
    edits = {
        "rate": lambda m: m["feature_config"].update(sample_rate=8000),
        "trim": lambda m: m["feature_config"].update(trim="none"),
        "fingerprint": lambda m: m.update(fingerprint="0123456789abcdef"),
    }
    for name, edit in edits.items():
        with pytest.raises(CheckpointError, match=rf"{name}.onnx: the model's graph or metadata changed after export"):
            OnnxSpeakerModel(_onnx_with(original, tmp_path / f"{name}.onnx", metadata_edit=edit))

    def resealed_size(fields):  # a forger who also recomputes the digest still cannot claim another output size
        from deep_speaker.exported import ExportMetadata, graph_digest

        fields["embedding_dim"] = 999
        fields.pop("format"), fields.pop("digest")
        fields["feature_config"] = FeatureConfig(**fields["feature_config"])
        fields.update(json.loads(ExportMetadata(**fields).sealed(graph_digest(original)).to_json()))

    with pytest.raises(CheckpointError, match=r"size.onnx: the metadata says 999-d embeddings, the graph outputs 16-d"):
        OnnxSpeakerModel(_onnx_with(original, tmp_path / "size.onnx", metadata_edit=resealed_size))
    tflite = tmp_path / "tiny.tflite"
    export_model(model, tflite, "tflite")
    fields = json.loads(sidecar(tflite).read_text())
    fields["feature_config"]["sample_rate"] = 8000
    sidecar(tflite).write_text(json.dumps(fields))
    with pytest.raises(CheckpointError, match=r"tiny.tflite: the model's graph or metadata changed after export"):
        load_encoder(tflite)


@pytest.mark.slow
def test_the_onnx_runtime_cache_is_checked_and_rebuilt_when_replaced(tmp_path, speech_file, private_home, caplog):
    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    other = tiny_model()
    other.set_weights([w * 1.5 for w in other.get_weights()])  # surely another model
    reference = SpeakerEncoder(checkpoint).embed(speech_file)
    first = load_encoder(checkpoint, runtime="onnx")
    cached = onnx_cache_path(checkpoint)
    other_export = tmp_path / "other.onnx"
    export_model(other, other_export, "onnx")
    for name, replacement in (("weights", _onnx_with(cached, tmp_path / "w.onnx", weights=2)), ("another model", other_export)):
        cached.write_bytes(replacement.read_bytes())
        with caplog.at_level("WARNING"):
            encoder = load_encoder(checkpoint, runtime="onnx")
        assert "the ONNX Runtime cache is not this model's export" in caplog.text, name
        caplog.clear()
        np.testing.assert_allclose(encoder.embed(speech_file), reference, atol=1e-4, err_msg=name)
        assert read_metadata(cached).fingerprint == first.fingerprint


@pytest.mark.slow
def test_force_replaces_earlier_exports_only(tmp_path, capsys):
    model = tiny_model()
    (tmp_path / "notes.onnx").write_bytes(b"an unrelated file")
    with pytest.raises(ConfigError, match=r"notes.onnx: exists and is not a deep-speaker export; force replaces earlier exports only"):
        export_model(model, tmp_path / "notes.onnx", "onnx", force=True)
    assert (tmp_path / "notes.onnx").read_bytes() == b"an unrelated file"
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"folder: exists and is not a deep-speaker export"):
        export_model(model, tmp_path / "folder", "savedmodel", force=True)
    assert (tmp_path / "folder" / "keep.txt").read_text() == "mine"
    export_model(model, tmp_path / "model.onnx", "onnx")
    export_model(model, tmp_path / "model.onnx", "onnx", force=True)  # an earlier export is replaced
    checkpoint = save_tiny_model(tmp_path / "tiny.keras")
    before = sorted(p.name for p in tmp_path.iterdir())
    dot = cli_in_process(capsys, "export", checkpoint, ".", "--format", "savedmodel")
    assert dot.returncode == 2 and "name the export" in dot.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_model_with_nan_weights_is_refused_at_load_and_export(tmp_path, capsys):
    import keras

    from deep_speaker.checkpoints import save_model
    from deep_speaker.model_files import load_model

    model = tiny_model()
    weights = model.get_weights()
    weights[3] = np.full_like(weights[3], np.nan)
    model.set_weights(weights)
    with pytest.raises(CheckpointError, match=r"model: weights hold NaN or infinity"):
        export_model(model, tmp_path / "nan.onnx", "onnx")
    assert not (tmp_path / "nan.onnx").exists()
    keras.saving.save_model(model, tmp_path / "nan.keras")
    with pytest.raises(CheckpointError, match=r"nan.keras: weights hold NaN or infinity"):
        load_model(tmp_path / "nan.keras")
    save_model(tiny_model(), tmp_path / "ok.keras")
    ensemble = cli_in_process(capsys, "ensemble", tmp_path / "nan.keras", tmp_path / "ok.keras", tmp_path / "e.keras")
    assert ensemble.returncode == 2 and "nan.keras: weights hold NaN or infinity" in ensemble.stderr


def test_the_trim_layer_keeps_exactly_what_the_host_trim_keeps():
    from deep_speaker.audio import speech_selection
    from deep_speaker.layers.trim import GRAPH_TRIMS, SilenceTrim

    rng = np.random.default_rng(0)
    for method in GRAPH_TRIMS:
        layer = SilenceTrim(method)
        for _ in range(8):
            size = int(rng.integers(500, 30000))
            loudness = np.repeat(rng.uniform(0.001, 1, size // 100 + 1), 100)[:size]
            waveform = (rng.standard_normal(size) * loudness).astype(np.float32)
            waveform[: int(rng.integers(0, size // 3))] *= 0.001  # a quiet lead-in for the trims to cut
            kept, _ = speech_selection(waveform, method)
            np.testing.assert_array_equal(np.asarray(layer(waveform))[0], waveform[kept])
    with pytest.raises(ConfigError, match="WebRTC's fixed-point VAD"):
        SilenceTrim("resemblyzer")


@pytest.mark.slow
def test_a_fusion_exports_standalone_and_the_cosine_of_its_outputs_is_the_fused_score(tmp_path, capsys):
    import onnxruntime

    from deep_speaker.assembly import fuse

    energy = save_tiny_model(tmp_path / "energy.keras", features=FeatureConfig(trim="energy"))
    reference = save_tiny_model(tmp_path / "reference.keras", embedding_dim=8)
    recordings, rng = [], np.random.default_rng(0)
    for pitch in (100, 170, 240):
        for take in range(2):
            silence = (0.0005 * rng.standard_normal(4000)).astype(np.float32)  # a quiet room, for the trims to cut
            recordings.append(np.concatenate([silence, synthetic_speech(1.2, pitch=pitch + 7 * take, seed=take), silence]))
    paths = []
    for index, waveform in enumerate(recordings):
        paths.append(tmp_path / f"r{index}.wav")
        sf.write(paths[-1], waveform, 16000, subtype="FLOAT")  # the graph sees exactly what the toolkit reads
    fusion = fuse([energy, reference], paths, [0, 0, 1, 1, 2, 2], tmp_path / "both.fusion.json", progress=False, runtime="keras")
    done = cli_in_process(capsys, "export", fusion, tmp_path / "both.onnx", "--format", "onnx", "--standalone")
    assert done.returncode == 0, done.stderr
    assert "trims inside: energy, reference" in done.stdout
    session = onnxruntime.InferenceSession(str(tmp_path / "both.onnx"))
    assert [i.name for i in session.get_inputs()] == ["waveform"] and [o.name for o in session.get_outputs()] == ["embedding"]
    metadata = json.loads(session.get_modelmeta().custom_metadata_map["deep_speaker"])
    fused = load_encoder(fusion, runtime="keras")
    assert metadata["fingerprint"] == fused.fingerprint and metadata["embedding_dim"] == 24 and metadata["calibration"] is None
    graph = np.stack([session.run(["embedding"], {"waveform": waveform})[0][0] for waveform in recordings])
    np.testing.assert_allclose(graph @ graph.T, fused.embed_many(paths) @ fused.embed_many(paths).T, atol=1e-5)
    with pytest.raises(CheckpointError, match="a standalone export, made to run without the toolkit"):
        load_encoder(tmp_path / "both.onnx")


def test_a_member_with_resemblyzer_trim_cannot_be_exported_standalone(tmp_path, capsys):
    checkpoint = save_tiny_model(tmp_path / "ge2e_like.keras", features=FeatureConfig(trim="resemblyzer"))
    refused = cli_in_process(capsys, "export", checkpoint, tmp_path / "x.onnx", "--format", "onnx", "--standalone")
    assert refused.returncode == 2 and "cannot run inside a graph" in refused.stderr and not (tmp_path / "x.onnx").exists()
