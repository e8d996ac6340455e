"""Commands about the model: switch it, list the catalogue, the figures."""

from __future__ import annotations

from chatterm.engines.speculation import describe
from chatterm.errors import ChattermError
from chatterm.models.catalog import Catalog, NotDownloaded
from chatterm.ui.commands.registry import CommandContext, command, complete_model, model_names


@command("model", "NAME", complete=complete_model)
def _model(ctx: CommandContext, arg: str) -> None:
    """Switch to another model, keeping the conversation and your settings."""
    if not arg:
        ctx.note(f"model: {ctx.loaded.spec.name} ({ctx.loaded.engine_name}); "
                 f"available: {', '.join(model_names())} (/models for details)")
        return

    try:
        ctx.switch_model(arg)
    except NotDownloaded as e:
        size = f", {e.spec.size / 1e9:.1f} GB" if e.spec.size else ""
        if not ctx.confirm(f"{e.spec.name} is not downloaded yet ({e.spec.location}{size}). Pull it now?"):
            ctx.note(f"not pulled; chatterm pull {e.spec.name} gets it later")
            return
        ctx.pull(e.spec.name)
        ctx.switch_model(arg)


@command("ctx", "[N]")
def _ctx(ctx: CommandContext, arg: str) -> None:
    """The context window in tokens (N: reload the model with a window of N tokens)."""
    if not arg:
        if ctx.wait_for_engine(ctx.loaded):
            used = ctx.conversation.measure() or 0
            ctx.note(f"context window {ctx.loaded.n_ctx:,} tokens, {used:,} in use; /ctx N changes it")
        return
    try:
        n_ctx = int(arg.replace(",", "").replace("_", ""))
    except ValueError:
        raise ChattermError("usage: /ctx N (tokens, e.g. /ctx 8192)") from None
    if n_ctx < 16:
        raise ChattermError("the context window must be at least 16 tokens")
    ctx.resize(n_ctx)


@command("models")
def _models(ctx: CommandContext, arg: str) -> None:
    """The catalogue and the models on disk, and whether each fits this machine."""
    from rich.text import Text

    from chatterm.ui.model_views import rows, table

    ctx.console.print(Text(table(rows(Catalog.load()))), soft_wrap=True)


@command("stats")
def _stats(ctx: CommandContext, arg: str) -> None:
    """Context use, speed of the last reply, model and engine."""
    if not ctx.wait_for_engine(ctx.loaded):
        return
    conversation, loaded, reply = ctx.conversation, ctx.loaded, ctx.conversation.last
    worker = f", worker pid {loaded.worker_pid}" if loaded.worker_pid is not None else ""
    lines = [f"model     {loaded.spec.name}  {loaded.path}",
             f"engine    {loaded.engine_name} on {loaded.device}{worker}",
             *(f"settings  {note}" for note in loaded.notes),
             f"context   {conversation.measure() or 0:,} / {loaded.n_ctx:,} tokens",
             f"messages  {len(conversation.messages)}  (session {ctx.session.name})"]
    if reply is not None:
        lines.append(f"last      {reply.n_tokens} tokens, {reply.tokens_per_s:.1f} tok/s, first token "
                     f"after {reply.first_token_s or 0:.2f} s, prompt {reply.prompt_tokens:,} tokens")
        reused, restored = loaded.reuse
        if reused is not None:
            disk = f" (the session's saved cache gave {restored:,} when it opened)" if restored else ""
            lines.append(f"cache     {min(reused, reply.prompt_tokens):,} prompt tokens reused{disk}, "
                         f"{max(0, reply.prompt_tokens - reused):,} read")

    lines += [f"speculate {line}" for line in describe(loaded.speculation)]
    for line in lines:
        ctx.note(line)
