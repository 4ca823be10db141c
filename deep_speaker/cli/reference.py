"""The command reference (`docs/commands.md`), generated from the parser so it cannot drift from the code.

python -m deep_speaker.cli.reference > docs/commands.md
"""

from __future__ import annotations

import argparse

from . import GROUPS, build_parser


def _flags(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.dest}`"
    return ", ".join(f"`{flag}`" for flag in action.option_strings)


def _default(action: argparse.Action) -> str:
    if action.required or not action.option_strings:
        return "required"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "off"
    return "" if action.default in (None, argparse.SUPPRESS) else f"`{action.default}`"


def _cell(text) -> str:
    return str(text or "").replace("%%", "%").replace("|", "\\|").replace("\n", " ")


def _options(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| option | default | choices | what |", "|---|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        choices = ", ".join(map(str, action.choices)) if action.choices else ""
        what = (action.help or "").replace("%(default)s", str(action.default))  # as argparse expands it
        rows.append(f"| {_flags(action)} | {_default(action)} | {_cell(choices)} | {_cell(what)} |")
    return rows


def markdown() -> str:
    """Every command, group by group, with its options."""
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in subcommands._choices_actions}
    lines = [
        "# Command reference",
        "",
        "Generated from the parser by `python -m deep_speaker.cli.reference > docs/commands.md` (a test keeps it current).",
        "Every command is `deep-speaker COMMAND ...` once installed, or `python cli.py COMMAND ...` in a checkout.",
        "Flags are spelt with hyphens (`--audio-dir`); each also accepts its underscore spelling (`--audio_dir`), which",
        "earlier versions documented, so existing scripts keep working.",
        "",
        "Global options (before the command):",
        "",
        *_options(parser),
    ]
    commands = {name: sub for name, sub in subcommands.choices.items() if name in helps}  # aliases left out
    for group in GROUPS:
        lines += ["", f"## {group.__name__.rsplit('.', 1)[-1]}", "", group.__doc__.strip()]
        for name, sub in commands.items():
            if sub.get_default("handler").__module__ == group.__name__:  # a command belongs to its handler's group
                lines += ["", f"### `{name}`", "", _cell(helps[name]), "", *_options(sub)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
