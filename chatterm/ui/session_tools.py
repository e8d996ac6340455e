"""`chatterm sessions` and `chatterm export`: the saved sessions listed and searched,
and training data made from them (formats: `chatterm.sessions.datasets`)."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from chatterm.errors import InputError
from chatterm.sessions import archive, datasets, kv_cache, sessions_dir, store
from chatterm.ui.guard import guarded

DATE = click.DateTime(["%Y-%m-%d"])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def session_tools() -> None:
    """List, search and export saved sessions."""


@session_tools.command()
@click.option("-s", "--search", metavar="TEXT", help="Find TEXT (any case) in every message of every session.")
@click.option("-n", "--limit", type=click.IntRange(1), help="Show the newest N only.")
@click.option("--prune-cache", is_flag=True, help="Remove the saved KV caches of sessions that no longer exist "
              "(and the oldest, past CHATTERM_KV_CACHE_GB).")
def sessions(search: str | None, limit: int | None, prune_cache: bool) -> None:
    """The saved sessions, newest first: name, last update, model, questions, ratings."""
    if prune_cache:
        guarded(_prune_cache)
        return
    guarded(_sessions, search, limit)


def _prune_cache() -> None:
    limit = kv_cache.limit_bytes()  # a bad bound is one line before anything is removed
    names = {p.stem for p in sessions_dir().glob("*.json")}
    gone = sum(kv_cache.forget_session(s) for s in {s for _, _, _, s in kv_cache.pairs()} if s not in names)
    gone += kv_cache.evict(limit)
    left = kv_cache.pairs()
    click.echo(f"removed {gone} saved caches; {len(left)} left, {sum(size for _, size, _, _ in left) / 2**20:,.1f} MiB "
               f"in {kv_cache.folder()}")


def _sessions(search: str | None, limit: int | None) -> None:
    from chatterm.ui.session_views import report

    if search is not None and not search.strip():
        raise InputError("--search needs some text")
    lines, problems, count = report(archive.files()[:limit], search)
    for line in lines:
        click.echo(line)
    for line in problems:
        click.echo(line, err=True)
    click.echo(count if search is not None else f"{count} in {sessions_dir()}", err=True)


@session_tools.command()
@click.argument("names", nargs=-1, metavar="[NAME|PATH]...")
@click.option("-f", "--format", "fmt", type=click.Choice(["sft", "dpo", "kto"]), default="sft", show_default=True,
              help="sft: conversations (messages); dpo: chosen/rejected pairs; kto: single votes.")
@click.option("--only", type=click.Choice(["good"]), help="sft: only conversations ending with a reply judged "
              "good (the default; --unrated takes the others too).")
@click.option("--unrated", is_flag=True, help="sft: each session's conversation with its unjudged replies too "
              "(by default only replies rated good or whose code passed its checks).")
@click.option("--from", "source", type=click.Choice(["ratings", "runs", "all"]), default="all", show_default=True,
              help="What makes a reply good or bad: your ratings, the runs of chatterm's checks (code that passed "
                   "its question's examples, or failed), or both (a rating wins).")
@click.option("--since", type=DATE, metavar="YYYY-MM-DD", help="Sessions last written on or after this day.")
@click.option("--until", type=DATE, metavar="YYYY-MM-DD", help="Sessions last written on or before this day.")
@click.option("--include-cut", is_flag=True, help="Keep replies that were stopped, failed or ran out of tokens.")
@click.option("--include-empty", is_flag=True, help="Keep empty questions and replies.")
@click.option("--thinking", is_flag=True,
              help="Keep reasoning models' thinking, as <think>...</think> before the answer.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSONL here (atomically) instead of stdout.")
def export(names: tuple[str, ...], fmt: str, only: str | None, unrated: bool, source: str, since: datetime | None,
           until: datetime | None, include_cut: bool, include_empty: bool, thinking: bool, output: Path | None) -> None:
    """Training data from saved sessions (all, or NAMEs), as JSONL in TRL's
    conversational formats: by default only what can be trusted (replies rated good, or
    whose code passed its checks); a summary of what was left out, and why, goes to
    stderr (docs/guide/datasets.md)."""
    kept: dict[str, Any] = {"include_cut": include_cut, "include_empty": include_empty, "thinking": thinking,
                            "source": source, "unrated": unrated}
    guarded(_export, names, fmt, only, since, until, kept, output)


def _export(names: tuple[str, ...], fmt: str, only: str | None, since: datetime | None,
            until: datetime | None, kept: dict[str, Any], output: Path | None) -> None:
    if (only or kept["unrated"]) and fmt != "sft":
        raise InputError(f"--only good and --unrated are for --format sft ({fmt} uses the judgements themselves)")
    if only and kept["unrated"]:
        raise InputError("--only good and --unrated contradict each other: give one")
    paths = archive.select(names, since and since.date(), until and until.date())
    options = datasets.Options(fmt, only_good=bool(only), **kept)
    tally = datasets.Tally()
    lines: list[str] = []
    read = 0
    for item in archive.read_all(paths):
        if isinstance(item, archive.Unreadable):
            click.echo(item.line, err=True)
            continue
        read += 1
        for record in datasets.records(item.messages, options, tally):
            line = datasets.jsonl(record)
            if output is None:
                sys.stdout.write(line + "\n")
            else:
                lines.append(line)
    if output is not None:
        store.atomic_write(output, "".join(line + "\n" for line in lines).encode("utf-8"))
    sys.stdout.flush()
    which = "unrated too" if kept["unrated"] else None if fmt != "sft" else "trusted: rated good or passed checks"
    if kept["source"] != "all":
        which = f"{which}, from {kept['source']}" if which else f"from {kept['source']}"
    click.echo(_summary(fmt, which, tally, read, output), err=True)


def _summary(fmt: str, only: str | None, tally, read: int, output: Path | None) -> str:
    kind = {"sft": "conversations", "dpo": "preference pairs", "kto": "rated replies"}[fmt]
    labels = (f" ({tally.labels['good']} good, {tally.labels['bad']} bad)" if fmt == "kto" and tally.records
              else "")
    where = f" to {output}" if output else ""
    which = f" ({only})" if only and only != "good" else " (only good)" if only else ""
    lines = [f"{fmt}{which}: {tally.records} {kind}{labels} from "
             f"{tally.sessions} of {read} sessions{where}"]
    for reason, n in sorted(tally.skipped.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"  left out: {n} × {reason}")
    return "\n".join(lines)
