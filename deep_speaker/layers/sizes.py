"""Size arithmetic inside layers that holds on every backend."""

from keras import ops


def size_maximum(size, floor: int):
    """max(size, floor) for a size taken from `ops.shape`: a Python int where the shape is static (JAX and PyTorch
    trace with concrete shapes, and under jax.jit a tensor here would be a tracer that `pad` and `arange` refuse),
    else a tensor (TensorFlow graphs with an unknown length)."""
    return max(size, floor) if isinstance(size, int) else ops.maximum(size, floor)
