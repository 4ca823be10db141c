"""Errors a user can act on. Each message names the file or setting at fault and the problem.

The command line prints these as one line and exits with status 2; anything else is a bug.
"""


class DeepSpeakerError(ValueError):
    """Base of every user-facing error of the toolkit."""


class CheckpointError(DeepSpeakerError):
    """A checkpoint cannot be used with the model; the message names the file and the layers at fault."""
