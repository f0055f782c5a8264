"""``bench cache``: the feature cache listed, verified and pruned."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from bench.cli.common import _examples, _log, app, out

cache_app = typer.Typer(no_args_is_help=True, help="The feature cache: list, verify, prune.")
app.add_typer(cache_app, name="cache")


def _cache_root(cache: Optional[Path]) -> Path:
    from bench.core import settings

    return cache or settings.cache_dir()


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:,.1f} MiB"


@cache_app.command("ls", epilog=_examples("cache ls"))
def cache_ls(cache: Optional[Path] = typer.Option(None, help="cache folder (default: $BENCH_HOME/cache)")) -> None:
    """Every cache entry: extractor, rows x dim, size, created, status (size and shape checked)."""
    from rich.markup import escape

    from bench.cache import cache_entries, entry_state

    root = _cache_root(cache)
    table = Table("key", "extractor", "rows x dim", "size", "created", "status", box=None)
    total = 0
    for store in cache_entries(root):
        state = entry_state(store, full=False)
        total += state.size
        shape = f"{state.rows} x {state.dim}" if state.rows is not None else ""
        table.add_row(state.key[:12], escape(state.extractor), shape, _size(state.size), escape(state.created),
                      escape(state.status + (f": {state.detail}" if state.detail else "")))
    out.print(table)
    out.print(f"{len(cache_entries(root))} entries, {_size(total)} in {root}", markup=False)


@cache_app.command("verify", epilog=_examples("cache verify"))
def cache_verify(cache: Optional[Path] = typer.Option(None, help="cache folder (default: $BENCH_HOME/cache)"),
                 evict: bool = typer.Option(True, help="remove the entries that fail (they are re-extracted when next needed)")) -> None:
    """Check every complete entry against its checksums (reads every file); exit code 1 if any fails."""
    from bench.cache import cache_entries, entry_state

    bad = 0
    stores = cache_entries(_cache_root(cache))
    for store in stores:
        state = entry_state(store, full=True)
        if state.status != "corrupt":
            continue
        bad += 1
        if evict:
            with store.lock():
                store.evict()
        _log(f"{state.detail}" + ("; evicted" if evict else ""))
    out.print(f"{len(stores) - bad} of {len(stores)} entries verified" + (f", {bad} failed" if bad else ""), markup=False)
    if bad:
        raise typer.Exit(1)


@cache_app.command("prune", epilog=_examples("cache prune"))
def cache_prune(
    cache: Optional[Path] = typer.Option(None, help="cache folder (default: $BENCH_HOME/cache)"),
    older_than: Optional[float] = typer.Option(None, min=0, help="also remove complete entries created more than this many days ago"),
    all_: bool = typer.Option(False, "--all", help="remove every entry no running process holds"),
    dry_run: bool = typer.Option(False, "--dry-run", help="list what would be removed"),
) -> None:
    """Remove corrupt and partial entries (never one a running process holds), and optionally old ones."""
    from bench.cache import prune

    removed = prune(_cache_root(cache), older_than_days=older_than, everything=all_, dry_run=dry_run)
    for state in removed:
        _log(f"{'would remove' if dry_run else 'removed'} {state.key[:12]} ({state.extractor or '?'}, {state.status}, "
             f"{_size(state.size)})")
    verb = "would free" if dry_run else "freed"
    out.print(f"{len(removed)} entries, {verb} {_size(sum(s.size for s in removed))}", markup=False)
