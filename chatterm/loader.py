"""From command-line choices to a model ready to answer (`Model`: its catalogue entry
and a conversation backend), and to a `Conversation` with it. One path for the one-shot
CLI, the REPL and `/model`.

A local model starts loading in an engine worker and `load` returns at once; the
conversation waits for the model when it first needs it (`IsolatedEngine.wait_ready`)."""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chatterm import engines
from chatterm.conversation import Conversation, templates
from chatterm.conversation.local import LocalBackend
from chatterm.conversation.model import Model
from chatterm.engines.base import LoadOptions, default_threads
from chatterm.errors import ChattermError, ConfigError, ModelFileError
from chatterm.models import adapters as lora
from chatterm.models import fit, gguf, hardware
from chatterm.models.catalog import Catalog, ModelSpec, remote_spec


@dataclass
class RunOptions:
    model: str | None = None
    engine: str = "auto"
    gpu_layers: int | str = "auto"
    threads: int | None = None
    ctx: int | None = None
    template: str | None = None
    system: str | None = None
    sampling: dict[str, Any] = field(default_factory=dict)  # only what the user set
    base_url: str | None = None  # an OpenAI-compatible server instead of a local model
    api_key_env: str | None = None
    isolated: bool = True  # False: the engine runs in this process (tests of the engines)
    restart: bool = True  # restart a crashed engine (the one-shot CLI reports it instead)
    tools: tuple[str, ...] = ()  # the tools the model may call (--tools)
    preapproved: tuple[str, ...] = ()  # those that run without asking (--yes)
    tool_choice: str = "auto"  # "required": the first reply of a turn is a call
    mcp: str | None = None  # --mcp FILE: the MCP servers to start (default: the user's mcp.json)
    schema: dict | None = None  # --schema/--json: replies are JSON matching this JSON Schema
    speculate: str = "auto"  # speculative decoding (llama.cpp): auto, ngram, draft, off
    draft: str | None = None  # --draft NAME|PATH: the draft model (default: the entry's draft)
    reproducible: bool = False  # --reproducible: batch-invariant kernels (slower), bit-identical greedy replies
    adapters: tuple[str, ...] = ()  # --lora PATH[:SCALE]: LoRA adapters, after the entry's own
    checks: tuple[str, ...] | None = None  # --check FILE: the user's asserts (checking on even without python)


def session_model(options: RunOptions, session: Any) -> tuple[RunOptions, str | None]:
    """`options` with the model `session` (`sessions.Session`) was made with, unless the
    user named one (-m, --base-url); a line to say when that model is not here."""
    made_with = session.model
    if options.model or options.base_url or not made_with or not session.messages:
        return options, None
    catalog = Catalog.load()
    default = catalog.default
    if session.engine == "remote":
        return options, (f"session {session.name} was made with {made_with} on a server: "
                         f"--base-url URL goes on there; answering with {default}")
    try:
        spec = catalog.find(made_with)
        if not spec.remote and not spec.model_path().is_file():
            raise ModelFileError(f"{spec.model_path()} is missing")
    except ChattermError:
        return options, f"session {session.name} was made with {made_with}, which is not here: answering with {default}"
    return dataclasses.replace(options, model=made_with), None


def conversation(loaded: Model, options: RunOptions, session: Any = None) -> Conversation:
    """A conversation with `loaded` in `session` (`sessions.Session`; a new one in
    memory by default): the system prompt of -s or the entry for one with no messages
    yet; the settings the user gives now over those the session saved."""
    conversation = Conversation(loaded, session, system=options.system or loaded.spec.system,
                                overrides=options.sampling)
    conversation.schema = options.schema
    if options.tools:
        from chatterm.tools.toolbox import Toolbox, select

        conversation.toolbox = Toolbox(select(options.tools), options.preapproved, choice=options.tool_choice)
    if "python" in options.tools or options.checks is not None:
        from chatterm.conversation.verify import Checking

        conversation.checking = Checking(list(options.checks or ()),
                                         approved=bool({"python", "all"} & set(options.preapproved)))
    return conversation


def load(options: RunOptions, catalog: Catalog | None = None) -> Model:
    if options.base_url:
        return _load_remote(remote_spec(options.base_url, options.model, options.api_key_env), options)
    catalog = catalog or Catalog.load()
    spec = catalog.find(options.model)
    if spec.remote:
        return _load_remote(spec, options)
    path = spec.model_path()
    kind = gguf.sniff(path)  # a missing or unreadable file is one line now, not in the worker
    allowed = spec.engines
    requested = _requested_adapters(options, spec)
    if requested:  # llama.cpp alone applies them
        if kind != "gguf" or options.engine == "ctransformers" or "llama.cpp" not in allowed:
            raise ConfigError(f"LoRA adapters need the llama.cpp engine; {spec.name!r} would run on "
                              "ctransformers, which cannot load one")
        allowed = ["llama.cpp"]
    if options.schema is not None and "llama.cpp" in allowed:  # the engine with a grammar, for JSON that parses
        allowed = ["llama.cpp", *[e for e in allowed if e != "llama.cpp"]]
    name = engines.choose(options.engine, path, allowed)
    if options.engine == "auto" and name not in spec.engines and kind == "gguf":
        raise ConfigError(f"model {spec.name!r} lists engines {spec.engines}; none is installed")
    n_ctx = options.ctx or spec.context_length
    if n_ctx is not None and n_ctx < 16:
        raise ConfigError("--ctx must be at least 16 tokens")
    choice = templates.check(options.template or spec.template)  # before a worker starts
    draft = _draft_path(options, spec, catalog, path, name)
    adapters = lora.load(requested, gguf.read(path)) if requested else []
    fitted, draft_layers = _fit(spec.name, path, n_ctx, options.gpu_layers, draft)
    load_options = LoadOptions(path=path, n_ctx=n_ctx, threads=options.threads or default_threads(),
                               gpu_layers=options.gpu_layers, fitted_layers=fitted,
                               model_type=spec.model_type, speculate=options.speculate,
                               draft=str(draft) if draft else None, draft_gpu_layers=draft_layers,
                               reproducible=options.reproducible,
                               adapters=tuple((a.loaded, a.scale) for a in adapters))
    if options.isolated:
        engine = engines.start(name, load_options, spec.name, allowed, restart=options.restart)
    else:
        engine = engines.load(name, load_options)
    backend = LocalBackend(engine, choice, list(spec.stop))
    if name == "llama.cpp" and options.isolated:
        from chatterm.sessions.kv_cache import KvStore, model_key

        mode = "reproducible" if options.reproducible else "fast"
        backend.kv_key = functools.partial(model_key, str(path), name, n_ctx or 0, mode)
        backend.kv = KvStore(backend.kv_key(lora.in_effect(adapters)))
    return Model(backend, spec, str(path), adapters)


def _requested_adapters(options: RunOptions, spec: ModelSpec) -> list[tuple[str, float]]:
    """The entry's adapters (paths relative to its models.toml), then --lora's."""
    folder = Path(spec.origin).parent if spec.origin else Path.cwd()
    entry = [(str(folder / os.path.expanduser(p)), s) for p, s in spec.adapters]
    try:
        return entry + [lora.parse(text) for text in options.adapters]
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _draft_path(options: RunOptions, spec: ModelSpec, catalog: Catalog, path: Path, engine: str) -> Path | None:
    """The draft model's file (--draft, else the entry's `draft`), checked against the
    model now: a draft of another vocabulary is one line, before any worker starts."""
    if options.speculate in ("off", "ngram"):
        return None
    name = options.draft or spec.draft
    if not name:
        if options.speculate == "draft":
            raise ConfigError("--speculate draft needs a draft model: --draft NAME|PATH (or a `draft` in the entry)")
        return None
    if engine != "llama.cpp":
        raise ConfigError(f"--draft needs the llama.cpp engine, not {engine}")
    draft = catalog.find(name)
    if draft.remote:
        raise ConfigError(f"the draft model {draft.name!r} is on a server; a draft runs beside the model")
    try:
        draft_path = draft.model_path()
        gguf.sniff(draft_path)
    except ChattermError:
        if options.draft or options.speculate == "draft":
            raise
        return None  # the entry's draft, not downloaded: prompt lookup alone
    mismatch = gguf.vocabulary_mismatch(gguf.read(path), gguf.read(draft_path))
    if mismatch:
        raise ConfigError(f"the draft model {draft.name!r} cannot draft for {spec.name!r}: {mismatch}")
    return draft_path


def _fit(name: str, path: Path, n_ctx: int | None, gpu_layers: int | str, draft: Path | None = None) -> tuple[int, int]:
    """The layers `--gpu-layers auto` can offload (-1: all), after refusing a model
    that cannot fit the RAM available (`chatterm.models.fit`); and the draft's (-1 or
    0): on the GPU when the whole model is and the draft fits beside it."""
    footprint = fit.of_file(path, n_ctx)  # a missing part of a split file is one line here
    extra = fit.of_file(draft, n_ctx) if draft else None
    gpu = hardware.cuda_device_count() > 0
    free = hardware.free_vram() if gpu and gpu_layers == "auto" else None
    fitted = footprint.layers_fitting(free) if free is not None else -1
    on_gpu = 0 if not gpu else fitted if gpu_layers == "auto" else int(gpu_layers)
    draft_layers, available = 0, hardware.available_ram()
    if extra is not None:  # the draft: on the GPU beside a model that is all there, if it fits what is left
        left = None if free is None else free - footprint.on_gpu(-1)
        whole = on_gpu == -1 or on_gpu > footprint.n_layers
        draft_layers = -1 if gpu and whole and (left is None or extra.on_gpu(-1) <= left) else 0
        if available is not None:
            available -= extra.in_ram(draft_layers) - fit.RAM_MARGIN
    fit.check_ram(footprint, on_gpu, available, name)
    return fitted, draft_layers


def _load_remote(spec: ModelSpec, options: RunOptions) -> Model:
    from chatterm.conversation.remote import RemoteBackend
    from chatterm.engines.remote.engine import RemoteEngine

    if options.adapters:
        raise ConfigError(f"--lora needs a local model on the llama.cpp engine; {spec.name!r} is on a server "
                          "(which loads its own adapters)")
    # A server drafts (or not) by its own settings: asking for it here would be ignored.
    if options.draft:
        raise ConfigError(f"--draft needs a local model on the llama.cpp engine; {spec.name!r} is on a server")
    if options.speculate in ("draft", "ngram"):
        raise ConfigError(f"--speculate {options.speculate} needs a local model on the llama.cpp engine; "
                          f"{spec.name!r} is on a server (its own settings decide)")

    engine = RemoteEngine(spec.location, spec.remote_model, options.api_key_env or spec.api_key_env,
                          timeout=spec.timeout, n_ctx=options.ctx or spec.context_length)
    choice = templates.check(options.template or spec.template)
    template = templates.resolve(choice, None, bos="", eos="") if choice != "gguf" else None
    if not spec.remote_model:  # --base-url without -m: name it as the server does (a path, for some)
        spec = dataclasses.replace(spec, name=engine.model.rstrip("/").rsplit("/", 1)[-1] or spec.name)
    return Model(RemoteBackend(engine, list(spec.stop), template), spec, spec.location)
