"""Every verb's --help says each option's default once, in words a reader can use.

"(default: None)" tells a reader nothing (issue 32: it came back 14 times in `train --help` after
the first-hour work had removed it, because no test kept it out); an option whose help states its
default twice ("(default 0.1) (default: None)") contradicts itself.
"""

import argparse
import re

import pytest

from normlab.cli import build_parser

PARSER = build_parser()
VERBS = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction)).choices
DEFAULT = re.compile(r"\(default\b|\bdefault:")


def options(verb):
    return [a for a in VERBS[verb]._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_every_verb_is_checked():
    assert {"train", "eval", "predict", "stats", "datasets", "lr-find", "export", "compare", "report", "runs",
            "claims", "models", "inspect"} <= set(VERBS)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_help_never_says_default_none(verb):
    text = VERBS[verb].format_help()
    assert "default: None" not in text and "(default: )" not in text
    for a in options(verb):
        assert "default: None" not in (a.help or "") and "(default: )" not in (a.help or ""), a.option_strings


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_each_default_is_said_once(verb):
    for a in options(verb):
        said = len(DEFAULT.findall(a.help or ""))
        assert said <= 1, f"{verb} {a.option_strings[0]} says its default {said} times: {a.help!r}"
        if a.default not in (None, argparse.SUPPRESS, False):
            assert said == 1, f"{verb} {a.option_strings[0]} has default {a.default!r} but its help does not say it"


def test_unset_train_options_say_what_unset_means():
    from normlab.cli import UNSET_MEANS
    from normlab.config import TrainConfig
    from dataclasses import fields

    help_of = {a.dest: a.help for a in options("train")}
    for f in fields(TrainConfig):
        if f.default is None and f.name in help_of:
            assert DEFAULT.search(help_of[f.name]), f.name
    assert "(default: no recipe)" in help_of["recipe"] and "(default: 0.1)" in help_of["bn_momentum"]
    assert set(UNSET_MEANS) <= set(help_of)
