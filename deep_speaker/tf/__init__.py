"""The TensorFlow-only part of the toolkit: the training driver, its callbacks and the distribution seam.

Everything else runs on any Keras 3 backend.
"""
