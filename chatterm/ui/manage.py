"""`chatterm pull | models | show | rm`: getting, listing, inspecting and removing models.
Questions are asked only on a terminal; elsewhere the safe answer is taken, or the
command fails with the choices listed."""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING

import click

from chatterm.errors import InputError, ModelFileError
from chatterm.models import hardware, naming
from chatterm.models.catalog import Catalog

if TYPE_CHECKING:
    from chatterm.models.hub.client import RemoteFile
    from chatterm.models.hub.store import LocalModel
from chatterm.ui.guard import guarded
from chatterm.units import size_text


def interactive() -> bool:
    return sys.stdin is not None and sys.stdin.isatty() and sys.stderr.isatty()


def choose_file(repo: str, candidates: list[RemoteFile]) -> RemoteFile:
    """On a terminal: which of several matching files to pull."""
    from chatterm.models.hub.pull import describe

    click.echo(f"{repo} has {len(candidates)} matching files:", err=True)
    for i, f in enumerate(candidates, 1):
        click.echo(f"  {i}. {describe(f)}", err=True)
    index = click.prompt("Pull which?", type=click.IntRange(1, len(candidates)), err=True)
    return candidates[index - 1]


def pull_model(target: str, out: IO[str], ask: bool) -> LocalModel:
    """Plan and fetch `target` with a progress display on `out`; the LocalModel."""
    from chatterm.models.hub import pull, store
    from chatterm.ui.download_progress import for_stream

    catalog = Catalog.load()
    plan = pull.plan(target, catalog, choose_file if ask else None)
    done = store.local(plan.repo, plan.first)
    if done is not None:
        print(f"{plan.name} is already downloaded: {done.paths[0]}", file=out)
        return done
    ram = hardware.available_ram()
    if plan.size and ram and plan.size > ram:
        message = (f"{plan.name} is {size_text(plan.size)}, more than the {size_text(ram)} of RAM "
                   "available: it will not run well here")
        if ask and not click.confirm(f"{message}. Pull it anyway?", default=False, err=True):
            raise InputError("nothing pulled")
        print(f"warning: {message}", file=out)
    for name in pull.unverified(plan):
        print(f"warning: the hub records no SHA-256 for {name}: only its size is checked", file=out)
    try:
        model = pull.run(plan, for_stream(out))
    except KeyboardInterrupt:
        print(f"stopped; run the same pull again to resume ({store.path_for(plan.repo, plan.first).parent})",
              file=out)
        raise
    return model


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def manage() -> None:
    """Get, list, inspect and remove models."""


@manage.command()
@click.argument("target", metavar="NAME|OWNER/REPO[:FILE|:QUANT]")
def pull(target: str) -> None:
    """Download a model into the models folder, verified, resumable.

    NAME is a catalogue entry (chatterm models). OWNER/REPO is any Hugging Face repository
    of GGUF files: :QUANT (e.g. :q4_k_m) picks the file of that quantization, :FILE the
    file itself. HF_TOKEN authenticates (gated repositories), HF_ENDPOINT picks a mirror.
    """
    def run() -> None:
        model = pull_model(target, sys.stderr, interactive())
        entry = Catalog.load().by_file(model.repo, model.file)
        name = entry.name if entry else model.ref
        click.echo(f"{name}: {size_text(model.size)}, SHA-256 verified, in {model.paths[0].parent}")
        click.echo(f"chat with it: chatterm -m {name}")
    guarded(run)


@manage.group(invoke_without_command=True)
@click.pass_context
def models(ctx: click.Context) -> None:
    """The catalogue and the models on disk: size, quantization, languages, and whether
    each fits this machine's memory (RAM, and VRAM with a CUDA GPU).
    `chatterm models add NAME PATH` names a model file on disk."""
    if ctx.invoked_subcommand is not None:
        return

    def run() -> None:
        from chatterm.ui.model_views import rows, table

        click.echo(table(rows(Catalog.load())))
    guarded(run)


@models.command("add")
@click.argument("name")
@click.argument("path", metavar="PATH")
@click.option("--replace", is_flag=True, help="Replace an entry of this name in your models.toml.")
def add_model(name: str, path: str, replace: bool) -> None:
    """Name a model file on disk: an entry in your models.toml with the file's digest and
    its family's template, stop strings and sampling; then -m NAME, -c and show NAME use it."""
    def run() -> None:
        written, entry = naming.add(name, path, replace)
        click.echo(f"added {name} to {written}:\n{entry}\nchat with it: chatterm -m {name}")
    guarded(run)


@manage.command()
@click.argument("model", metavar="NAME|PATH")
def show(model: str) -> None:
    """A model's architecture, parameters, quantization, context, chat template, stop
    tokens, file and size, and the memory it needs here."""
    def run() -> None:
        from chatterm.ui.model_views import show as facts
        from chatterm.ui.model_views import spec_for

        click.echo(facts(spec_for(Catalog.load(), model)))
    guarded(run)


@manage.command()
@click.argument("model", metavar="NAME|OWNER/REPO:FILE")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
def rm(model: str, yes: bool) -> None:
    """Delete a downloaded model (and any stopped download of it)."""
    def run() -> None:
        from chatterm.models.hub import refs, store

        catalog = Catalog.load()
        spec = catalog.models.get(model)
        if spec is not None and not spec.downloadable:
            raise ModelFileError(f"{model} was not pulled (it is {spec.source}-based): nothing to remove")
        ref = refs.parse(model)
        local = spec.downloaded() if spec else store.find(ref) if ref else None
        if local is None:
            raise ModelFileError(f"{model} is not downloaded (chatterm models lists what is)")
        if not yes and interactive() and not click.confirm(
                f"Remove {model} ({size_text(local.size)}, {local.paths[0]})?", default=False, err=True):
            raise InputError("nothing removed")
        freed = store.remove(local)
        click.echo(f"removed {model}: {size_text(freed)} freed")
    guarded(run)
