"""The `chatterm` command. Only click is imported at start-up: engines, rich and
prompt_toolkit load when a chat actually starts, so `chatterm --help` stays fast."""

from __future__ import annotations

import sys
from typing import Any

import click

from chatterm import __version__
from chatterm.errors import InputError
from chatterm.models.engine_names import ENGINE_NAMES
from chatterm.settings import SETTINGS, Setting
from chatterm.ui.guard import guarded


def _gpu_layers(ctx: click.Context, param: click.Parameter, value: str) -> int | str:
    from chatterm.models.hardware import parse_gpu_layers
    try:
        return parse_gpu_layers(value)
    except ValueError as e:
        raise click.BadParameter(str(e).split(" takes ")[-1]) from None


def _click_type(setting: Setting) -> click.ParamType:
    if setting.kind is int:
        return click.IntRange(None if setting.low is None else int(setting.low),
                              None if setting.high is None else int(setting.high))
    return click.FloatRange(setting.low, setting.high)


def sampling_options(command: Any) -> Any:
    """A click option for each sampling setting, from its declaration (`--NAME/--no-NAME`
    for on/off ones)."""
    for setting in reversed(SETTINGS.values()):
        if setting.kind is bool:
            option = click.option(f"{setting.option}/--no-{setting.option[2:]}", setting.name, default=None,
                                  help=setting.help)
        else:
            option = click.option(setting.option, setting.name, type=_click_type(setting), help=setting.help)
        command = option(command)
    return command


# `chatterm NAME ...` runs these (each a click group's command, imported only then);
# anything else is a prompt (`chatterm -- models` asks the model "models").
SUBCOMMANDS = {"pull": "manage", "models": "manage", "show": "manage", "rm": "manage",
               "sessions": "session_tools", "export": "session_tools", "train": "train_command"}


def main(args: list[str] | None = None) -> None:
    """The `chatterm` command: a subcommand, or a chat."""
    from chatterm.ui import terminal

    terminal.install()  # from here on, nothing reaches the terminal uncleaned
    argv = sys.argv[1:] if args is None else list(args)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        module = SUBCOMMANDS[argv[0]]
        group = getattr(importlib.import_module(f"chatterm.ui.{module}"), module)
        group.main(args=argv, prog_name="chatterm")
    else:
        chat.main(args=argv, prog_name="chatterm")


@click.command(context_settings={"help_option_names": ["-h", "--help"]},
               epilog="Models: chatterm pull NAME|REPO[:QUANT], chatterm models, chatterm show NAME, "
                      "chatterm rm NAME. Sessions: chatterm sessions [--search TEXT], "
                      "chatterm export --format sft|dpo|kto. Fine-tuning: chatterm train -m NAME (each with --help).")
@click.argument("prompt", nargs=-1)
@click.option("-m", "--model", metavar="NAME|PATH", help="A models.toml entry or a .gguf/.bin file (default: smollm2).")
@click.option("--engine", type=click.Choice(["auto", *ENGINE_NAMES]), default="auto", show_default=True,
              help="auto: ctransformers for GGML files, else llama.cpp when installed (docs/guide/engines-and-gpu.md).")
@click.option("--base-url", metavar="URL", help="Chat with a model on an OpenAI-compatible server "
              "(vLLM, TGI, SGLang, llama-server, ollama), e.g. http://127.0.0.1:8000/v1; -m names its model.")
@click.option("--api-key-env", metavar="VAR", help="Environment variable holding the server's API key.")
@click.option("--gpu-layers", default="auto", show_default=True, callback=_gpu_layers, metavar="N|auto",
              help="Layers to offload to a CUDA GPU: auto = all when a GPU and a CUDA build are present, 0 = CPU.")
@click.option("--threads", type=click.IntRange(1, 512), help="CPU threads (default: the cores available).")
@click.option("--ctx", type=click.IntRange(16), help="Context window in tokens (default: the model's entry).")
@sampling_options
@click.option("--speculate", type=click.Choice(["auto", "ngram", "draft", "off"]), default="auto", show_default=True,
              help="Speculative decoding on llama.cpp: drafts copied from the prompt (ngram) or made by --draft, "
                   "checked by the model in one batch. auto: where it pays (a GPU; on the CPU it does not).")
@click.option("--reproducible", is_flag=True, help="Batch-invariant kernels on the CPU (slower): greedy replies are "
              "identical to the bit with and without speculation.")
@click.option("--lora", "adapters", metavar="PATH[:SCALE]", multiple=True,
              help="A LoRA adapter (GGUF, llama.cpp's format) over the model, at SCALE (default 1); repeatable. "
                   "/lora switches and scales them in the chat.")
@click.option("--draft", metavar="NAME|PATH", help="A small model of the same vocabulary that drafts tokens for "
              "the model (default: the entry's draft).")
@click.option("-f", "--file", "files", multiple=True, metavar="PATH",
              help="Add a text file (or a glob, or a folder) to the first message; repeatable.")
@click.option("-s", "--system", metavar="TEXT", help="System prompt.")
@click.option("-r", "--role", metavar="NAME", help="A named system prompt (translator, reviewer, concise, coder, or "
              "yours in ~/.config/chatterm/roles.toml).")
@click.option("--tools", metavar="NAME,...|all", help="Tools the model may call, each call shown and asked first: "
              "run, python, read_file, list_files, write_file (or all). Off by default.")
@click.option("--yes", "preapproved", multiple=True, metavar="TOOL",
              help="Run this tool's calls without asking (repeatable; 'all' for every tool). Without a "
                   "terminal, only these run.")
@click.option("--mcp", "mcp_config", metavar="FILE", help="MCP servers to start, in the mcpServers format "
              "(default: ~/.config/chatterm/mcp.json); their tools join --tools, each call asked first.")
@click.option("--schema", metavar="JSON|FILE", help="Answer with JSON matching this JSON Schema (a grammar "
              "holds llama.cpp to it; a server is asked for it, and its answer checked).")
@click.option("--json", "any_json", is_flag=True, help="Answer with a JSON object (--schema for a given shape).")
@click.option("--check", "check_file", metavar="FILE", help="Python asserts run against each code answer, with "
              "the question's own examples (docs/guide/verified-code.md); failing answers are sampled again "
              "(--verify N). Each run is asked first (--yes python runs them).")
@click.option("--tool-choice", type=click.Choice(["auto", "required"]), default="auto", show_default=True,
              help="required: the model answers each question with a tool call first (kept to the tool's "
                   "schema on llama.cpp; tool_choice on a server).")
@click.option("--template", metavar="NAME",
              help="Chat template: gguf (the file's own) or a preset such as chatml, llama3.")
@click.option("-c", "--continue", "resume", is_flag=True, help="Resume the most recent chat session.")
@click.option("--session", metavar="NAME", help="Open (or create) the named chat session.")
@click.option("-i", "--interactive", is_flag=True, help="After answering PROMPT/stdin, keep chatting in the terminal.")
@click.option("--no-save", is_flag=True, help="Keep no session of a one-shot answer (each is saved by default, "
              "so chatterm -c goes on from it).")
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
              help="Colour and Markdown styling (NO_COLOR is respected).")
@click.version_option(__version__, "--version", prog_name="chatterm")
def chat(prompt: tuple[str, ...], **opts: Any) -> None:
    """Chat with a local quantized model (GGUF/GGML) on a CUDA GPU or the CPU.

    With PROMPT, or text piped on stdin, print one answer and exit (PROMPT first, then
    stdin). With neither, on a terminal, open the interactive chat.
    """
    guarded(_run, prompt, opts)


def _read_stdin() -> str:
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"stdin is not UTF-8 text (invalid byte at offset {e.start})") from None


def _run_options(opts: dict[str, Any]) -> Any:
    from chatterm.loader import RunOptions

    system = opts["system"]
    if opts["role"]:
        from chatterm import roles

        if system:
            raise InputError("--role is a system prompt: give --role or --system, not both")
        role = roles.find(opts["role"])
        system = role.prompt
        if role.tools and not opts["tools"]:
            opts = {**opts, "tools": ",".join(role.tools)}
    return RunOptions(model=opts["model"], engine=opts["engine"], gpu_layers=opts["gpu_layers"],
                      threads=opts["threads"], ctx=opts["ctx"], template=opts["template"],
                      system=system, base_url=opts["base_url"], api_key_env=opts["api_key_env"],
                      sampling={k: opts[k] for k in SETTINGS if opts[k] is not None},
                      tools=_tools(opts["tools"], opts["preapproved"]), preapproved=tuple(opts["preapproved"]),
                      tool_choice=opts["tool_choice"], mcp=opts["mcp_config"],
                      schema=_schema(opts["schema"], opts["any_json"]),
                      speculate=opts["speculate"], draft=opts["draft"], reproducible=opts["reproducible"],
                      adapters=tuple(opts["adapters"]), checks=_checks(opts["check_file"]))


def _checks(path: str | None) -> tuple[str, ...] | None:
    """--check FILE's asserts (read and parsed now, before a model loads)."""
    if path is None:
        return None
    from chatterm.checking.user import read_file

    return tuple(read_file(path))


def _schema(text: str | None, any_json: bool) -> dict | None:
    """--schema's JSON Schema (checked now, before a model loads), or --json's."""
    if text is None and not any_json:
        return None
    from chatterm.structured import schema

    if text is not None and any_json:
        raise InputError("--schema is JSON of a given shape, --json any JSON object: give one of them")
    return schema.parse(text) if text is not None else dict(schema.ANY_OBJECT)


def _tools(spec: str | None, preapproved: tuple[str, ...]) -> tuple[str, ...]:
    """The tools named by --tools (checked now, before a model loads); --yes TOOL
    enables the tools it names too."""
    if not spec and not preapproved:
        return ()
    from chatterm.tools.toolbox import select

    named = select(spec) if spec else []
    more = select([p for p in preapproved if p != "all"]) if preapproved else []
    if "all" in preapproved and not spec:
        more = select("all")
    return tuple(dict.fromkeys(t.name for t in [*named, *more]))


def _attach(patterns: tuple[str, ...]) -> list:
    """The files of -f, read now: a bad one fails before any model loads."""
    if not patterns:
        return []
    from chatterm.attachments import gather

    found = gather(list(patterns))
    for skipped in found.skipped:
        click.echo(f"chatterm: left out {skipped}", err=True)
    return found.files


def _run(prompt_args: tuple[str, ...], opts: dict[str, Any]) -> None:
    stdin_is_tty = sys.stdin is not None and sys.stdin.isatty()
    parts = [" ".join(prompt_args)] if prompt_args else []
    if not stdin_is_tty and sys.stdin is not None:
        piped = _read_stdin()
        if piped.strip():
            parts.append(piped)
    options = _run_options(opts)
    chosen = None
    if opts["session"] is not None or opts["resume"]:  # before anything is asked of the model
        from chatterm import loader, sessions

        chosen = sessions.choose(opts["session"], opts["resume"])
        options, note = loader.session_model(options, chosen)
        if note:
            click.echo(f"chatterm: {note}", err=True)
    files = _attach(opts["files"])
    if not parts:
        if not stdin_is_tty and not opts["interactive"] and chosen is None:
            raise InputError("stdin is empty: nothing to answer" + (" (-f adds files to a question: give one)"
                                                                    if files else ""))
        from chatterm.ui.repl import run_repl  # the interactive chat

        run_repl(options, session=opts["session"], resume=opts["resume"], color=opts["color"],
                 tty_input=not stdin_is_tty, attached=files, chosen=chosen)
        return
    text = "\n\n".join(p.strip("\n") for p in parts)
    if not text.strip():
        raise InputError("the prompt is empty")
    question = None
    if files:
        from chatterm.attachments import message

        question, text = text, message(files, text)
    from chatterm.ui.oneshot import one_shot

    # The answer is kept as a session (the one -c or --session chose, else a new one),
    # unless --no-save; -i goes on chatting in it.
    if chosen is None and not opts["no_save"]:
        from chatterm import sessions

        chosen = sessions.Session(name=sessions.new_name())
    loaded, conversation = one_shot(text, options, opts["color"], keep=opts["interactive"], question=question,
                                    session=chosen)
    if opts["interactive"]:
        from chatterm.ui.repl import run_repl

        run_repl(options, color=opts["color"], loaded=loaded, conversation=conversation,
                 tty_input=not stdin_is_tty, chosen=conversation.session)
