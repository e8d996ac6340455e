"""From command-line choices to a `Chat`: catalogue entry, engine, chat template,
sampling. One path for the one-shot CLI and the REPL.

A local model starts loading in an engine worker and `load_chat` returns at once; the
chat waits for the model when it first needs it (`IsolatedEngine.wait_ready`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from chatterm import engines, gguf, templates
from chatterm.catalog import Catalog, ModelSpec, remote_spec
from chatterm.chat import Chat
from chatterm.engines.base import LoadOptions, Sampling, default_threads
from chatterm.errors import ConfigError


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


@dataclass
class Loaded:
    chat: Any  # Chat, or RemoteChat for a model on a server
    spec: ModelSpec
    path: str

    @property
    def engine_name(self) -> str:
        """The engine running now: a crash can switch it (`engines.recovery`)."""
        return str(self.chat.engine.name)


def load_chat(options: RunOptions, catalog: Catalog | None = None) -> Loaded:
    if options.base_url:
        return _load_remote(remote_spec(options.base_url, options.model, options.api_key_env), options)
    catalog = catalog or Catalog.load()
    spec = catalog.find(options.model)
    if spec.remote:
        return _load_remote(spec, options)
    path = spec.model_path()
    kind = gguf.sniff(path)  # a missing or unreadable file is one line now, not in the worker
    name = engines.choose(options.engine, path, spec.engines)
    if options.engine == "auto" and name not in spec.engines and kind == "gguf":
        raise ConfigError(f"model {spec.name!r} lists engines {spec.engines}; none is installed")
    n_ctx = options.ctx or spec.context_length
    if n_ctx is not None and n_ctx < 16:
        raise ConfigError("--ctx must be at least 16 tokens")
    choice = templates.check(options.template or spec.template)  # before a worker starts
    load_options = LoadOptions(path=path, n_ctx=n_ctx, threads=options.threads or default_threads(),
                               gpu_layers=options.gpu_layers, model_type=spec.model_type)
    if options.isolated:
        engine = engines.start(name, load_options, spec.name, spec.engines, restart=options.restart)
    else:
        engine = engines.load(name, load_options)
    sampling = Sampling().updated(**spec.sampling).updated(**options.sampling)
    chat = Chat(engine, choice, sampling, list(spec.stop), system=options.system or spec.system)
    return Loaded(chat, spec, str(path))


def _load_remote(spec: ModelSpec, options: RunOptions) -> Loaded:
    from chatterm.engines.remote_engine import RemoteEngine
    from chatterm.remote_chat import RemoteChat

    engine = RemoteEngine(spec.location, spec.remote_model, options.api_key_env or spec.api_key_env,
                          timeout=spec.timeout, n_ctx=options.ctx or spec.context_length)
    choice = options.template or spec.template
    template = templates.resolve(choice, None, bos="", eos="") if choice != "gguf" else None
    sampling = Sampling().updated(**spec.sampling).updated(**options.sampling)
    chat = RemoteChat(engine, sampling, list(spec.stop), system=options.system or spec.system,
                      template=template)
    if not spec.remote_model:  # --base-url without -m: name it as the server does (a path, for some)
        spec = dataclasses.replace(spec, name=engine.model.rstrip("/").rsplit("/", 1)[-1] or spec.name)
    return Loaded(chat, spec, spec.location)
