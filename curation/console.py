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


def outcome_table(mix_name: str, table: list[dict]):
    """A mixture's outcome by source (``curation.mixture``'s table) as a rich table: rows, or tokens
    for a token mixture."""
    from rich.table import Table

    tokens = any("target_tokens" in r for r in table)
    unit = "tokens" if tokens else "rows"
    t = Table(title=f"mixture {mix_name}: outcome by source ({unit})", show_lines=False)
    cols = ("source", "share", "available", "target", "observed", "target %", "observed %",
            "repeated" if tokens else "tokens")
    for col in cols:
        t.add_column(col, justify="right" if col != "source" else "left")
    for r in table:
        if tokens:
            share = f"{r['share']:g} of tokens" if r["share"] <= 1 else f"{int(r['share'])} tokens"
            t.add_row(r["source"], share, str(r["available_tokens"]), str(r["target_tokens"]), str(r["observed_tokens"]),
                      f"{100 * r['target_token_ratio']:.1f}", f"{100 * r['token_ratio']:.1f}",
                      f"x{r['repetitions']:g} (cap {r['max_repetition']:g})")
            continue
        share = {"fraction": f"{r['share']:g} of rows", "upsample": f"x{r['share']:g}", "count": f"{int(r['share'])} rows"}[r["mode"]]
        t.add_row(r["source"], share, str(r["available"]), str(r["target_rows"]), str(r["observed_rows"]),
                  f"{100 * r['target_ratio']:.1f}", f"{100 * r['observed_ratio']:.1f}", str(r["observed_tokens"]))
    return t
