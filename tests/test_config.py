import pytest

from deep_speaker.config import ConfigError, SoftmaxConfig, TripletConfig, load_recipe


def test_defaults_are_the_reference_recipe():
    softmax, triplet = SoftmaxConfig(), TripletConfig()
    assert (softmax.batch_size, softmax.validation_fraction, softmax.early_stopping_patience) == (96, 0.2, 20)
    assert (softmax.reduce_lr_patience, softmax.reduce_lr_factor, softmax.dropout) == (10, 0.5, 0.5)
    assert (triplet.batch_size, triplet.margin, triplet.num_frames) == (96, 0.1, 160)
    assert (softmax.width, softmax.embedding_dim) == (1.0, 512)


def test_yaml_then_flags(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("width: 0.25\nbatch_size: 48\n")
    config = load_recipe(SoftmaxConfig, recipe, batch_size=24, epochs=None)
    assert (config.width, config.batch_size, config.epochs) == (0.25, 24, SoftmaxConfig().epochs)


def test_unknown_yaml_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("widht: 0.25\n")
    with pytest.raises(ConfigError, match=r"r.yaml: unknown option\(s\) \['widht'\]"):
        load_recipe(SoftmaxConfig, recipe)


def test_bad_yaml(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="a recipe is a mapping"):
        load_recipe(TripletConfig, recipe)
