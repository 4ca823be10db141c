"""Building blocks of the TDNN family (x-vector, ECAPA-TDNN) on (batch, frames, channels) tensors."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="deep_speaker")
class ReflectPadding1D(keras.layers.Layer):
    """Reflect-pad the time axis by (left, right) frames: the 'same' padding of SpeechBrain's Conv1d."""

    def __init__(self, left: int, right: int, **kwargs):
        super().__init__(**kwargs)
        self.left, self.right = int(left), int(right)

    def call(self, x):
        return ops.pad(x, [[0, 0], [self.left, self.right], [0, 0]], mode="reflect")

    def compute_output_shape(self, input_shape):
        frames = None if input_shape[1] is None else input_shape[1] + self.left + self.right
        return (input_shape[0], frames, input_shape[2])

    def get_config(self):
        return {**super().get_config(), "left": self.left, "right": self.right}


@keras.saving.register_keras_serializable(package="deep_speaker")
class ChannelSplit(keras.layers.Layer):
    """Split the channel axis into `parts` equal groups (Res2Net)."""

    def __init__(self, parts: int, **kwargs):
        super().__init__(**kwargs)
        self.parts = int(parts)

    def call(self, x):
        return ops.split(x, self.parts, axis=-1)

    def compute_output_shape(self, input_shape):
        return [(*input_shape[:-1], input_shape[-1] // self.parts)] * self.parts

    def get_config(self):
        return {**super().get_config(), "parts": self.parts}


@keras.saving.register_keras_serializable(package="deep_speaker")
class SqueezeExcitation(keras.layers.Layer):
    """Channel gates from the utterance mean: x * sigmoid(conv2(relu(conv1(mean_t x)))) (SpeechBrain's SEBlock)."""

    def __init__(self, bottleneck: int = 128, **kwargs):
        super().__init__(**kwargs)
        self.bottleneck = int(bottleneck)
        self.conv1 = keras.layers.Dense(self.bottleneck, name="conv1", dtype=self.dtype_policy)

    def build(self, input_shape):
        self.conv2 = keras.layers.Dense(input_shape[-1], name="conv2", dtype=self.dtype_policy)
        self.conv1.build((input_shape[0], input_shape[-1]))
        self.conv2.build((input_shape[0], self.bottleneck))

    def call(self, x):
        gates = ops.sigmoid(self.conv2(ops.relu(self.conv1(ops.mean(x, axis=1)))))
        return x * gates[:, None, :]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "bottleneck": self.bottleneck}


def tdnn_block(x, channels: int, kernel_size: int, dilation: int, name: str, activation: str = "relu"):
    """Conv1d with reflect 'same' padding -> activation -> BatchNorm (SpeechBrain's TDNNBlock order)."""
    total = dilation * (kernel_size - 1)
    if total:
        x = ReflectPadding1D(total // 2, total - total // 2, name=f"{name}_pad")(x)
    x = keras.layers.Conv1D(channels, kernel_size, dilation_rate=dilation, name=f"{name}_conv")(x)
    if activation == "leaky_relu":  # PyTorch's slope (0.01), as SpeechBrain's x-vector has it, not Keras's 0.2
        x = keras.layers.LeakyReLU(negative_slope=0.01, name=f"{name}_activation")(x)
    else:
        x = keras.layers.Activation(activation, name=f"{name}_activation")(x)
    return keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5, name=f"{name}_norm")(x)
