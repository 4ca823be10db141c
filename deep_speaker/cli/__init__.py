"""Command line: parse arguments, call the library, print. `deep-speaker -h` (or `python cli.py -h`) lists the commands.

One module per group of commands (`data`, `train`, `evaluate`, `use`, `diarize`, `deploy`, `adversarial`), each with
its handlers and a `register(commands)` that adds their parsers; `common` holds what many share. Heavy imports
(TensorFlow) happen inside the commands that need a model, so `--help`, `list` and argument errors start fast.
"""

from __future__ import annotations

import argparse
import importlib.abc
import importlib.util
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from .. import __version__  # noqa: E402
from ..audio import TRIM_METHODS  # noqa: E402
from ..errors import ConfigError, DeepSpeakerError  # noqa: E402
from . import adversarial, data, deploy, diarize, evaluate, train, use  # noqa: E402

GROUPS = (data, train, evaluate, use, diarize, deploy, adversarial)  # the order of `deep-speaker -h`


def _hyphenated(token: str) -> str:
    """A flag in the one spelling: `--audio_dir` -> `--audio-dir` (a value after `=` is left alone)."""
    if not token.startswith("--"):
        return token
    flag, equals, value = token.partition("=")
    return flag.replace("_", "-") + equals + value


class _Parser(argparse.ArgumentParser):
    """One flag spelling: words joined by hyphens (`--audio-dir`). The underscore spelling (`--audio_dir`, which
    scripts written for earlier versions use) is accepted everywhere as an alias: flags are respelt before parsing."""

    def add_argument(self, *names, **options):
        return super().add_argument(*dict.fromkeys(map(_hyphenated, names)), **options)

    def parse_known_args(self, args=None, namespace=None):
        args = sys.argv[1:] if args is None else list(args)
        return super().parse_known_args([_hyphenated(token) if isinstance(token, str) else token for token in args], namespace)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="deep-speaker", description="Deep Speaker speaker recognition toolkit")
    parser.add_argument("--version", action="version", version=f"deep-speaker {__version__}")
    loudness = parser.add_mutually_exclusive_group()
    loudness.add_argument("--quiet", action="store_true", help="no progress bars and no log messages below warnings")
    loudness.add_argument("--verbose", action="store_true", help="log what the toolkit does (INFO), for diagnosing a run")
    parser.add_argument(
        "--trim", choices=TRIM_METHODS, default=None, help="silence removal before features (default: the model's, else 'reference')"
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for group in GROUPS:
        group.register(commands)
    return parser


OUTPUTS = ("out", "target", "rttm", "json", "plot", "scores")  # the arguments naming files a command writes


def refuse_output_over_input(args) -> None:
    """No command writes over one of its own inputs (an attack's OUT = IN would destroy the original recording)."""
    values = vars(args)
    inputs = [
        (name, item)
        for name, value in values.items()
        if name not in OUTPUTS
        for item in (value if isinstance(value, list) else [value])
        if isinstance(item, (str, Path))
    ]
    for output in (values.get(name) for name in OUTPUTS):
        if not isinstance(output, (str, Path)) or not os.path.exists(output):
            continue
        for name, value in inputs:
            if os.path.exists(value) and os.path.samefile(output, value):
                raise ConfigError(
                    f"{output}: is also this command's input ({name.replace('_', '-')}); writing there would destroy it: choose another output"
                )


class _QuietLoader(importlib.abc.Loader):
    """Runs a module's import with the process's stderr (file descriptor 2) sent to /dev/null; Python errors still raise."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        saved = os.dup(2)
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 2)
                self.loader.exec_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _QuietTensorFlowImport(importlib.abc.MetaPathFinder):
    """Imports TensorFlow, whenever a command first needs it, without the banner its C++ libraries print as they load
    (oneDNN, CPU features: written before any log level applies; TF_CPP_MIN_LOG_LEVEL does not reach it)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders locate it
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def _set_loudness(args) -> None:
    """Log warnings only (`--quiet`, which also turns every command's progress bars off: `args.quiet`), or INFO
    (`--verbose`)."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=args.verbose
    )


def main(argv=None) -> int:
    if "tensorflow" not in sys.modules and not any(isinstance(finder, _QuietTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    args = build_parser().parse_args(argv)
    _set_loudness(args)
    try:
        refuse_output_over_input(args)
        return args.handler(args)
    except DeepSpeakerError as error:
        hint = f" ({error.cli_hint})" if error.cli_hint else ""
        print(f"error: {error}{hint}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk, a read-only folder, a missing permission: the system's own words
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; finished work is kept, run the same command again to resume", file=sys.stderr)
        return 130
