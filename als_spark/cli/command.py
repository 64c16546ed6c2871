"""The table the command line is built from: one :class:`Command` per sub-command."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: A command's handler: parsed arguments in, ``run.json``'s content (printed as a summary) or ``None`` out.
Handler = Callable[[argparse.Namespace], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Command:
    """A sub-command: its name, help texts, arguments and handler."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Handler
    description: str = ""  #: the longer text of ``als-spark NAME --help`` (default: ``help``)
