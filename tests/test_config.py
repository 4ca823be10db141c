import pytest

from deep_speaker.config import PHASE_DEFAULTS, load_recipe, recipe_features
from deep_speaker.errors import ConfigError
from deep_speaker.features import FeatureConfig


def test_defaults_are_the_reference_recipe():
    classification, triplet = PHASE_DEFAULTS["classification"], PHASE_DEFAULTS["triplet"]
    assert (classification.run.batch_size, classification.run.validation_fraction, classification.run.early_stopping_patience) == (
        96,
        0.2,
        20,
    )
    assert (classification.optimiser.reduce_lr_patience, classification.optimiser.reduce_lr_factor, classification.model.dropout) == (
        10,
        0.5,
        0.5,
    )
    assert (triplet.run.batch_size, triplet.loss.margin, triplet.run.num_frames, triplet.optimiser.name) == (96, 0.1, 160, "sgd")
    assert (classification.model.width, classification.model.embedding_dim, classification.model.name) == (1.0, 512, "rescnn")


def test_nested_or_flat_yaml_then_flags(tmp_path):
    nested, flat = tmp_path / "nested.yaml", tmp_path / "flat.yaml"
    nested.write_text("model: {width: 0.25}\nrun: {batch_size: 48}\nloss: {name: amsoftmax}\n")
    flat.write_text("width: 0.25\nbatch_size: 48\nloss: amsoftmax\n")
    for path in (nested, flat):
        recipe = load_recipe("classification", path, batch_size=24, epochs=None)
        assert (recipe.model.width, recipe.run.batch_size, recipe.run.epochs, recipe.loss.name) == (0.25, 24, 1000, "amsoftmax")
    assert load_recipe("classification", nested).to_dict()["model"]["width"] == 0.25


@pytest.mark.parametrize(
    "text,problem",
    [
        ("widht: 0.25\n", r"r.yaml: unknown option\(s\) \['widht'\]"),
        ("model: {widht: 0.25}\n", r"unknown option\(s\) \['widht'\] in model"),
        ("- a\n- b\n", "a recipe is a mapping"),
        ("width: fast\n", "option width \\(model\\) must be float, got 'fast'"),
        ("phase: triplet\n", "a recipe for another phase"),
    ],
)
def test_bad_recipes(tmp_path, text, problem):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_recipe("classification", recipe)


@pytest.mark.parametrize(
    "phase,options,problem",
    [
        ("classification", {"loss": "arcface"}, "loss 'arcface' is not one of"),
        ("classification", {"model": "lstm"}, "unknown model 'lstm'"),
        ("classification", {"optimiser": "rmsprop"}, "unknown optimiser"),
        ("head", {"head": "lstm"}, "unknown head 'lstm'"),
        ("head", {"fusion": "bogus"}, "unknown fusion 'bogus'"),
        ("classification", {"epochs": 0}, "epochs must be >= 1"),
        ("classification", {"validation_fraction": 1.5}, r"validation_fraction must be in \(0, 1\)"),
        ("classification", {"learning_rate": -0.1}, "learning_rate must be > 0"),
        ("classification", {"learning_rate": float("nan")}, "learning_rate must be > 0"),
        ("classification", {"width": 0.0}, "width must be > 0"),
        ("classification", {"width": 1e9}, "width must be > 0 and at most 4, got 1000000000.0"),
        ("classification", {"width": float("nan")}, "width must be > 0"),
        ("classification", {"embedding_dim": 10**7}, "embedding_dim must be >= 1 and at most 4096"),
        ("classification", {"seed": -1}, r"seed must be 0 to 2\^32 - 1, got -1"),
        ("classification", {"batch_size": 0}, "batch_size must be >= 1"),
        ("classification", {"num_frames": 0}, "num_frames must be >= 16"),
        ("classification", {"dropout": 1.5}, r"dropout must be in \[0, 1\)"),
        ("classification", {"scale": 0.0}, "scale must be > 0"),
        ("head", {"epochs": 0}, "epochs must be >= 1"),
        ("triplet", {"batch_size": 2}, "batch_size must be >= 3"),
        ("classification", {"select_by": "val_loss"}, "select_by must be one of"),
        ("triplet", {"select_by": "val_accuracy"}, "triplet training selects its best epoch by val_eer only"),
    ],
)
def test_every_option_is_checked_before_any_work(phase, options, problem):
    with pytest.raises(ConfigError, match=problem):
        load_recipe(phase, **options)


def test_unknown_phase():
    with pytest.raises(ConfigError, match="unknown training phase"):
        load_recipe("vocoder")


def test_the_features_a_model_trains_on_are_part_of_its_recipe(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("features: {energies: log, normalisation: utterance}\nmodel: {width: 0.25}\n")
    assert recipe_features(recipe) == FeatureConfig(energies="log", normalisation="utterance")
    assert load_recipe("classification", recipe, trim="energy").features.trim == "energy"  # flags over the file
    with pytest.raises(ConfigError, match="unknown filterbank energies 'loud'"):
        load_recipe("classification", energies="loud")
    with pytest.raises(ConfigError, match="unknown option"):
        load_recipe("head", energies="log")  # a head trains on its base model's features
