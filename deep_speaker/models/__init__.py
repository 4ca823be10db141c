"""Speaker-embedding models, built by name."""

from .rescnn import build_rescnn, embedding_model_from, feature_config_of

MODEL_BUILDERS = {"rescnn": build_rescnn}


def build_model(name: str, **kwargs):
    """Build a registered model; unknown names raise with the list of choices."""
    if name not in MODEL_BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose from {sorted(MODEL_BUILDERS)}")
    return MODEL_BUILDERS[name](**kwargs)


__all__ = ["MODEL_BUILDERS", "build_model", "build_rescnn", "embedding_model_from", "feature_config_of"]
