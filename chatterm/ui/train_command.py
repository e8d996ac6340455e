"""`chatterm train`: the user's records (rated sessions, or an exported JSONL file)
turned into a LoRA adapter for the model they chat with, on this machine, written as
a GGUF file `--lora` loads (`chatterm.training`; docs/guide/lora.md)."""

from __future__ import annotations

import shlex
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from chatterm import loader, safe_files
from chatterm.errors import ChattermError, ConfigError, InputError
from chatterm.models import gguf, hardware
from chatterm.models.catalog import Catalog
from chatterm.paths import data_dir
from chatterm.ui.guard import guarded
from chatterm.units import count, duration, size_text

SUPPORTED = ("llama", "qwen2")  # transformers dequantizes these from GGUF; the adapter's names are checked


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def train_command() -> None:
    """Train a LoRA adapter on your own ratings."""


@train_command.command()
@click.option("-m", "--model", metavar="NAME|PATH", help="The model to adapt: a models.toml entry or a "
              ".gguf file of the llama or qwen2 architecture (default: smollm2).")
@click.option("-f", "--format", "fmt", type=click.Choice(["sft", "dpo"]), default="sft", show_default=True,
              help="sft: learn the replies judged good; dpo: prefer the good alternative over the bad one.")
@click.option("--from", "source", type=click.Choice(["ratings", "runs", "all"]), default="all", show_default=True,
              help="What makes a reply good or bad: your ratings, the runs of chatterm's checks, or both.")
@click.option("--sessions", "names", multiple=True, metavar="NAME",
              help="Train on this session (repeat for several; default: every saved session).")
@click.option("--data", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Train on this JSONL file (chatterm export's formats) instead of the sessions.")
@click.option("--without-system", is_flag=True, help="Leave system prompts out of the records: the adapter "
              "learns to answer as the model did with them (teach with -s, then chat without it).")
@click.option("--epochs", type=click.IntRange(1, 1000), default=3, show_default=True,
              help="Passes over the records.")
@click.option("--rank", type=click.IntRange(1, 256), default=8, show_default=True,
              help="The LoRA rank: larger learns more, costs more.")
@click.option("--alpha", type=click.IntRange(1, 10_000), metavar="A",
              help="LoRA alpha; the adapter's weight is alpha / rank (default: twice the rank).")
@click.option("--lr", type=click.FloatRange(0, 1, min_open=True), metavar="RATE",
              help="Learning rate (default: 2e-4 for sft, 5e-5 for dpo).")
@click.option("--ctx", type=click.IntRange(16), metavar="N",
              help="Longest record in tokens (default: the model's chat window).")
@click.option("--seed", type=click.IntRange(0), default=0, show_default=True, help="Order of the records.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="The adapter's file (default: a new one in ~/.local/share/chatterm/adapters).")
def train(**opts: Any) -> None:
    """Train a LoRA adapter for MODEL on your records: by default the replies you rated
    good (sft) in every saved session, as `chatterm export` makes them. The base
    weights are read from the model's own GGUF file; training runs on the GPU when
    torch sees one, else on the CPU. Ctrl-C stops it and keeps the last finished
    step's adapter."""
    guarded(_train, opts)


def _train(opts: dict[str, Any]) -> None:
    from chatterm.training import missing

    lacking = missing()
    if lacking:
        raise ConfigError(f"chatterm train needs the training extra ({', '.join(lacking)} missing): "
                          "pip install 'chatterm[train]'")
    from chatterm.training import data as records_of

    fmt = opts["fmt"]
    if opts["data"] is not None and opts["names"]:
        raise InputError("--data and --sessions each choose the records: give one")
    records = (records_of.from_file(opts["data"], fmt) if opts["data"] is not None
               else records_of.from_sessions(opts["names"], fmt, opts["source"]))
    if opts["without_system"]:
        records = records.without_system()
    plan = _Plan(opts, records)
    plan.prepare()
    plan.run()


class _Plan:
    def __init__(self, opts: dict[str, Any], records: Any):
        from chatterm.training.loop import Settings

        self.opts, self.records = opts, records
        rank = opts["rank"]
        lr = opts["lr"] or (2e-4 if records.format == "sft" else 5e-5)
        self.settings = Settings(epochs=opts["epochs"], rank=rank, alpha=opts["alpha"] or 2 * rank, lr=lr,
                                 seed=opts["seed"])

    def prepare(self) -> None:
        """The records as the model's tokens (its own template and tokenizer), checked
        against its window; the memory training takes, checked against what is free."""
        from chatterm.training import examples

        catalog = Catalog.load()
        spec = catalog.find(self.opts["model"])
        if spec.remote:
            raise ConfigError(f"{spec.name} runs on a server: chatterm train adapts a local GGUF model's weights")
        model = loader.load(loader.RunOptions(model=self.opts["model"], engine="llama.cpp", ctx=self.opts["ctx"]),
                            catalog)
        try:
            self.base = gguf.read(model.path)
            if self.base.architecture not in SUPPORTED:
                raise ConfigError(f"chatterm train adapts {' and '.join(SUPPORTED)} models; {model.name} is "
                                  f"{self.base.architecture}")
            _status("reading the records with the model's template and tokenizer")
            self.data = examples.of_model(model, self.records.items, self.records.format, self.records.source)
            self.name, self.reference, self.path = model.name, model.reference, Path(model.path)
        finally:
            model.close()
        self.target = self.opts["output"] or _default_output(self.name, self.records.format)
        _check_writable(self.target)
        self._check_memory()

    def _check_memory(self) -> None:
        from chatterm.training import memory
        from chatterm.training.loop import device

        longest = max(len(d) for d in self.data)
        self.need = memory.estimate(self.base, longest)
        self.device = device()
        # The weights are dequantized in RAM, then trained where torch runs: the GPU's
        # memory must hold what training needs too.
        for where, free in (("memory", hardware.available_ram()),
                            ("GPU memory", hardware.free_vram() if self.device == "cuda" else None)):
            if free is not None and self.need > free:
                raise ChattermError(f"training {self.name} needs about {size_text(self.need)} of {where} "
                                    f"(its weights as float32, and records of up to {longest:,} tokens); "
                                    f"{size_text(free)} is available. Close other programs, or train a smaller "
                                    "model")

    def run(self) -> None:
        from chatterm.training import loop

        settings, fmt = self.settings, self.records.format
        total = settings.epochs * len(self.data)
        kind = "preference pairs" if fmt == "dpo" else "conversations"
        _status(f"training a rank-{settings.rank} LoRA for {self.name} on {self.device.upper()}: "
                f"{len(self.data):,} {kind} ({self.records.source}), {count(settings.epochs, 'epoch')} = "
                f"{count(total, 'step')}; about {size_text(self.need)} of memory")
        for reason, n in sorted(self.records.left_out.items(), key=lambda kv: (-kv[1], kv[0])):
            _status(f"  left out: {n} × {reason}")  # as `chatterm export` says it
        started = time.monotonic()
        _status(f"loading {self.path.name} (dequantizing its weights)")
        model = loop.with_adapter(loop.load(self.path, self.device), settings)
        loaded = time.monotonic() - started
        with _Progress(total) as progress:
            outcome = loop.train(model, self.data, fmt, settings, progress.step)
        if outcome.steps == 0:
            _status("stopped before the first step finished: nothing written")
            sys.exit(130)
        _write(self.target, outcome.state, self.base, settings, self.name)
        self._summary(outcome, self.target, loaded)
        if outcome.stopped:
            sys.exit(130)

    def _summary(self, outcome: Any, target: Path, loaded: float) -> None:
        losses = outcome.losses
        first = sum(losses[:len(self.data)]) / len(losses[:len(self.data)])
        last = sum(losses[-len(self.data):]) / len(losses[-len(self.data):])
        stopped = (f"stopped by Ctrl-C after step {outcome.steps:,} of {outcome.total:,}; that step's adapter "
                   "is kept\n" if outcome.stopped else "")
        click.echo(f"{stopped}trained {count(outcome.steps, 'step')} in {duration(outcome.seconds)} "
                   f"(loading {duration(loaded)}); loss {first:.3f} -> {last:.3f} (mean of the first and "
                   f"last epoch's steps)", err=True)
        click.echo(f"adapter: {target} ({size_text(target.stat().st_size)})", err=True)
        click.echo(f"chat with it: chatterm -m {shlex.quote(self.reference)} --lora {shlex.quote(str(target))}",
                   err=True)


def _write(target: Path, state: dict, base: Any, settings: Any, name: str) -> None:
    """The adapter written, then checked as `--lora` checks it."""
    from chatterm.training import adapter_file

    try:
        adapter_file.save(target, state, base, alpha=settings.alpha, name=f"{name} LoRA")
    except OSError as e:
        raise ChattermError(f"cannot write {target}: {e.strerror or e}") from None


def _check_writable(target: Path) -> None:
    """Before training, not after: a file can be made where the adapter goes."""
    if target.is_dir():
        raise InputError(f"{target} is a folder: -o names the adapter's file")
    try:
        safe_files.ensure_private_dir(target.parent)  # as writing it would
        with tempfile.TemporaryFile(dir=target.parent):
            pass
    except OSError as e:
        raise InputError(f"cannot write {target}: {e.strerror or e}") from None


def _default_output(name: str, fmt: str) -> Path:

    safe = "".join(c if c.isalnum() or c in "._-" else "-" for c in name)[:80]
    return data_dir() / "adapters" / f"{safe}-{fmt}-{datetime.now():%Y%m%d-%H%M%S}.gguf"


def _status(text: str) -> None:
    click.echo(text, err=True)


class _Progress:
    """Steps, loss and time left: a bar on a terminal, else a line per tenth of the run."""

    def __init__(self, total: int):
        self.total = total
        self.bar: Any = None
        self._lines_done = 0

    def __enter__(self) -> _Progress:
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            from chatterm.ui import terminal

            self.bar = Progress(TextColumn("training", markup=False), BarColumn(), MofNCompleteColumn(),
                                TextColumn("steps, loss {task.fields[loss]},", markup=False), TimeRemainingColumn(),
                                TextColumn("left", markup=False), console=terminal.console(sys.stderr),
                                transient=True)
            self.bar.start()
            self.task = self.bar.add_task("train", total=self.total, loss="…")
        return self

    def step(self, step: Any) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=step.done, loss=f"{step.mean:.3f}")
            return
        tenth = step.done * 10 // self.total
        if tenth > self._lines_done or step.done == 1:
            self._lines_done = tenth
            left = step.seconds / step.done * (self.total - step.done)
            click.echo(f"step {step.done:,}/{self.total:,}: loss {step.mean:.3f}, {duration(left)} left", err=True)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
