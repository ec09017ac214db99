"""How every phase talks to the terminal: one status line per plan node, rich progress bars, and a
console that stays readable in CI logs (rich cuts table headers at 80 columns when its output is not
a terminal: there it uses a wider page)."""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

LOG_WIDTH = 160  # columns when the output is a file or a pipe (CI logs)


def make_console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty()
    width = None if tty or os.environ.get("COLUMNS") else LOG_WIDTH
    return Console(stderr=stderr, width=width)


def say(console: Console, node, status: str) -> None:
    console.print(f"[bold]{node.kind:8}[/] {node.name:32} [dim]{node.key[:12]}[/]  {status}")


def progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True)
