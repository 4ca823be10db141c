"""Every error a user can act on, in one place. Each message names the file or setting at fault and the problem.

The library's messages speak in terms of the Python API; `cli_hint` optionally adds the command-line way
out (a flag to pass), which only the command line prints. The command line prints these errors as one
line and exits with status 2; any other exception is a bug.
"""


class DeepSpeakerError(ValueError):
    """Base of every user-facing error of the toolkit."""

    def __init__(self, message: str, cli_hint: str | None = None):
        super().__init__(message)
        self.cli_hint = cli_hint


class MissingExtraError(ModuleNotFoundError, DeepSpeakerError):
    """An optional dependency is not installed; the message names the extra of `pip install deep-speaker[...]`
    that brings it (`optional.EXTRA_OF`)."""

    def __init__(self, module: str, extra: str):
        ModuleNotFoundError.__init__(self, f"this needs {module}, which is not installed: pip install 'deep-speaker[{extra}]'", name=module)
        self.cli_hint = None


class AudioError(DeepSpeakerError):
    """An input recording cannot be used; the message names the file and the problem."""


class MissingAudioError(AudioError):
    """The file does not exist."""


class EmptyAudioError(AudioError):
    """The file has no bytes or no samples."""


class UnsupportedFormatError(AudioError):
    """The file is not in a format we can decode."""


class CorruptAudioError(AudioError):
    """The file claims a supported format but cannot be decoded."""


class InvalidSamplesError(AudioError):
    """The samples contain NaN or infinity."""


class SilentAudioError(AudioError):
    """Every sample is zero (or constant): there is no speech to find."""


class AudioLimitError(AudioError):
    """The file declares a sample rate, channel count or duration beyond the limits (checked before decoding)."""


class NoSpeechError(AudioError):
    """The recording holds no speech: stationary noise, hum, dither, or silence."""


class TooShortError(AudioError):
    """After trimming, less than one analysis frame (25 ms) of audio is left."""


class DatasetError(DeepSpeakerError):
    """A corpus source cannot be read; the message names it and the problem."""


class CacheError(DeepSpeakerError):
    """A working directory is missing, incomplete or built with other settings."""


class CheckpointError(DeepSpeakerError):
    """A checkpoint cannot be used with the model; the message names the file and the layers at fault."""


class ConfigError(DeepSpeakerError):
    """A recipe file or option is invalid."""


class TrainingError(DeepSpeakerError):
    """A training run cannot go on or produced nothing usable."""


class CalibrationError(DeepSpeakerError):
    """A calibration file cannot be read, or no threshold is available for a decision."""


class RegistryError(DeepSpeakerError):
    """The enrolment store cannot do what was asked (unknown name, other model, empty store...)."""


class UnknownSpeakerError(RegistryError):
    """No speaker of that name is enrolled."""


class SpeakerExistsError(RegistryError):
    """A speaker of that name is already enrolled (and replacing was not asked for)."""


class TrialsError(DeepSpeakerError):
    """A trial list cannot be read."""
