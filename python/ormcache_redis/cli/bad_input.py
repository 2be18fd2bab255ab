"""The command's name, and its rule for bad input: one sentence on
stderr, exit 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

PROG = "ormcache-redis"


class Parser(argparse.ArgumentParser):
    """argparse with the project's rule for bad input: one sentence, exit 2."""

    def error(self, message: str) -> NoReturn:
        fail_input(f"{message} (see {self.prog} --help)")


def fail_input(sentence: str) -> NoReturn:
    sentence = sentence.rstrip(".")
    print(f"{PROG}: {sentence}.", file=sys.stderr)
    raise SystemExit(2)
