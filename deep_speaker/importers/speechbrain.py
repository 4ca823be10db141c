"""SpeechBrain ECAPA-TDNN and x-vector checkpoints (`embedding_model.ckpt`) as speaker models of this toolkit.

The widths are read from the checkpoint's tensors (channels, kernel sizes, Res2Net scale, SE and attention
channels, embedding size); dilations are not stored in it and default to SpeechBrain's (1, 2, 3, 4, 1). Our
`ecapa_tdnn` backbone names its layers after SpeechBrain's modules (`blocks_1_tdnn1_conv` is
`blocks.1.tdnn1.conv`), so every weight is found by name; x-vector layer i is SpeechBrain's `blocks.{3 i}`
(Conv1d) and `blocks.{3 i + 2}` (BatchNorm). The front end is SpeechBrain's `Fbank` with sentence
mean normalisation (`FeatureConfig(kind="speechbrain")`), and SpeechBrain does not trim silence.

The published VoxCeleb model (`speechbrain/spkrec-ecapa-voxceleb`: channels 1024 x 4 and 3072, attention 128,
192-d, 80 mels) converts the same way from its downloaded `embedding_model.ckpt`.
"""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np

from ..checkpoints import assign_weights_by_name
from ..errors import CheckpointError
from ..features import FeatureConfig
from ..models import build_backbone, build_speaker_model
from .torch_checkpoint import read_torch_checkpoint, require_tensors

DEFAULT_DILATIONS = (1, 2, 3, 4, 1)


def _speechbrain_key(layer_name: str) -> str:
    """Our layer name -> SpeechBrain's module path (`blocks_1_se_block` -> `blocks.1.se_block`)."""
    key = layer_name.replace("_", ".")
    for module in ("res2net_block", "se_block", "asp_bn"):
        key = key.replace(module.replace("_", "."), module)
    return key


def _conv(state: dict, key: str) -> list[np.ndarray]:
    """A SpeechBrain Conv1d (weight (out, in, k)) as a Keras Conv1D kernel (k, in, out) and bias."""
    return [state[f"{key}.weight"].transpose(2, 1, 0), state[f"{key}.bias"]]


def _norm(state: dict, key: str) -> list[np.ndarray]:
    return [state[f"{key}.{name}"] for name in ("weight", "bias", "running_mean", "running_var")]


def _layer_weights(layer: keras.layers.Layer, state: dict) -> list[np.ndarray]:
    key = _speechbrain_key(layer.name)
    kind = type(layer).__name__
    if kind == "Conv1D":
        return _conv(state, f"{key}.conv")
    if kind == "BatchNormalization":
        return _norm(state, f"{key}.norm")
    if kind == "SqueezeExcitation":
        first, second = _conv(state, f"{key}.conv1.conv"), _conv(state, f"{key}.conv2.conv")
        return [first[0][0], first[1], second[0][0], second[1]]
    if kind == "AttentiveStatsPooling":
        tdnn, conv = _conv(state, f"{key}.tdnn.conv.conv"), _conv(state, f"{key}.conv.conv")
        return [tdnn[0][0], tdnn[1], *_norm(state, f"{key}.tdnn.norm.norm"), conv[0][0], conv[1]]
    if kind == "Dense":
        weight, bias = _conv(state, f"{key}.conv")
        return [weight[0], bias]
    raise CheckpointError(f"no SpeechBrain counterpart for layer {layer.name} ({kind})")


def ecapa_options(state: dict, source) -> dict:
    """Our `ecapa_tdnn` options from a SpeechBrain ECAPA-TDNN state dict's tensor shapes."""
    try:
        blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))})
        first = state["blocks.0.conv.conv.weight"]
        res2net = [state[f"blocks.{b}.res2net_block.blocks.0.conv.conv.weight"] for b in blocks[1:]]
        asp = state["asp.tdnn.conv.conv.weight"]
        mfa = state["mfa.conv.conv.weight"]
        scale = 1 + len({k.split(".")[4] for k in state if k.startswith("blocks.1.res2net_block.blocks.")})
        return {
            "num_fbanks": int(first.shape[1]),
            "channels": (
                int(first.shape[0]),
                *(int(state[f"blocks.{b}.tdnn1.conv.conv.weight"].shape[0]) for b in blocks[1:]),
                int(mfa.shape[0]),
            ),
            "kernel_sizes": (int(first.shape[2]), *(int(w.shape[2]) for w in res2net), int(mfa.shape[2])),
            "dilations": DEFAULT_DILATIONS[: len(blocks)] + (1,),
            "attention_channels": int(asp.shape[0]),
            "res2net_scale": scale,
            "se_channels": int(state["blocks.1.se_block.conv1.conv.weight"].shape[0]),
            "global_context": int(asp.shape[1]) == 3 * int(mfa.shape[0]),
            "embedding_dim": int(state["fc.conv.weight"].shape[0]),
        }
    except (KeyError, IndexError, AttributeError) as error:
        raise CheckpointError(f"{source}: not a SpeechBrain ECAPA-TDNN state dict (missing {error})") from None


def _xvector_layers(state: dict) -> int:
    """TDNN layers of a SpeechBrain Xvector: its Conv1d modules."""
    return sum(1 for key in state if re.fullmatch(r"blocks[.][0-9]+[.]conv[.]weight", key))


def xvector_options(state: dict, source) -> dict:
    """Our `xvector` options from a SpeechBrain Xvector state dict (layer i's Conv1d is `blocks.{3 i}`)."""
    try:
        convs = [state[f"blocks.{3 * i}.conv.weight"] for i in range(_xvector_layers(state))]
        return {
            "num_fbanks": int(convs[0].shape[1]),
            "channels": tuple(int(w.shape[0]) for w in convs),
            "kernel_sizes": tuple(int(w.shape[2]) for w in convs),
            "embedding_dim": int(state[f"blocks.{3 * len(convs) + 1}.w.weight"].shape[0]),
        }
    except (KeyError, IndexError) as error:
        raise CheckpointError(f"{source}: not a SpeechBrain Xvector state dict (missing {error})") from None


def _xvector_weights(layer: keras.layers.Layer, state: dict) -> list[np.ndarray]:
    if layer.name == "embedding":  # after the TDNN layers' 3 modules each and the pooling
        linear = f"blocks.{3 * _xvector_layers(state) + 1}.w"
        return [state[f"{linear}.weight"].T, state[f"{linear}.bias"]]
    index = int(layer.name.split("_")[1])
    if type(layer).__name__ == "Conv1D":
        return _conv(state, f"blocks.{3 * index}.conv")
    return _norm(state, f"blocks.{3 * index + 2}.norm")


ARCHITECTURES = {  # name: (backbone, options from the state dict, weights of one layer)
    "ecapa_tdnn": ("ecapa_tdnn", ecapa_options, _layer_weights),
    "xvector": ("xvector", xvector_options, _xvector_weights),
}


def import_speechbrain(path, dilations=None) -> keras.Model:
    """A waveform-in speaker model from a SpeechBrain ECAPA-TDNN or x-vector `embedding_model.ckpt` (recognised
    by its tensors); `dilations` where the model was built with other than SpeechBrain's defaults."""
    source = Path(path)
    state = read_torch_checkpoint(source)
    if not isinstance(state, dict):
        raise CheckpointError(f"{source}: not a state dict")
    architecture = "ecapa_tdnn" if "mfa.conv.conv.weight" in state else "xvector" if "blocks.0.conv.weight" in state else None
    if architecture is None:
        raise CheckpointError(f"{source}: neither a SpeechBrain ECAPA-TDNN nor an x-vector state dict")
    require_tensors(state, source)
    backbone_name, read_options, layer_weights = ARCHITECTURES[architecture]
    options = read_options(state, source)
    if dilations is not None:
        options["dilations"] = tuple(dilations)
    num_fbanks = options.pop("num_fbanks")
    backbone = build_backbone(backbone_name, num_fbanks, width=1.0, **options)
    weights = {}
    for layer in (layer for layer in backbone.layers if layer.weights):
        try:
            weights[layer.name] = layer_weights(layer, state)
        except KeyError as error:
            raise CheckpointError(f"{source}: no tensor {error} for layer {layer.name}") from None
    assign_weights_by_name(backbone, weights, source)
    features = FeatureConfig(num_fbanks=num_fbanks, trim="none", kind="speechbrain")
    return build_speaker_model(backbone, features, name=f"{architecture}_speechbrain")
