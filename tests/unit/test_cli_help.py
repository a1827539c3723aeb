"""Every command, subcommand and option of ``driftline`` says in ``--help`` what it is."""

from __future__ import annotations

import argparse

from driftline.cli import build_parser


def _parsers(parser: argparse.ArgumentParser, path: str = "driftline"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_argument_of_every_command_has_help():
    missing = []
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            if not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"arguments without help: {missing}"


def test_every_command_has_a_one_line_summary():
    top = build_parser()
    (subs,) = [a for a in top._actions if isinstance(a, argparse._SubParsersAction)]
    listed = {c.dest for c in subs._choices_actions}
    assert listed == set(subs.choices), f"commands without help: {set(subs.choices) - listed}"
