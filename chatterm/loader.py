"""From command-line choices to a ready `Chat`: catalogue entry, file checks, engine,
chat template, sampling. One path for the one-shot CLI and the REPL."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from chatterm import engines, gguf, templates
from chatterm.catalog import Catalog, ModelSpec, remote_spec
from chatterm.chat import Chat
from chatterm.engines.base import LoadOptions, Sampling, default_threads
from chatterm.errors import ConfigError

DEFAULT_CTX_CAP = 4096  # for models without a context_length entry: memory stays modest


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


@dataclass
class Loaded:
    chat: Any  # Chat, or RemoteChat for a model on a server
    spec: ModelSpec
    engine_name: str
    path: str


def context_size(requested: int | None, spec: ModelSpec, trained: int | None) -> int:
    """--ctx, else the entry's, else the model's capped at DEFAULT_CTX_CAP; never above
    what the model was trained for."""
    n_ctx = requested or spec.context_length or min(trained or DEFAULT_CTX_CAP, DEFAULT_CTX_CAP)
    return min(n_ctx, trained) if trained else n_ctx


def load_chat(options: RunOptions, catalog: Catalog | None = None) -> Loaded:
    if options.base_url:
        return _load_remote(remote_spec(options.base_url, options.model, options.api_key_env), options)
    catalog = catalog or Catalog.load()
    spec = catalog.find(options.model)
    if spec.remote:
        return _load_remote(spec, options)
    path = spec.model_path()
    kind = gguf.sniff(path)
    parsed = gguf.read(path) if kind == "gguf" else None  # validated before native code sees it
    trained_ctx = parsed.context_length if parsed else None
    name = engines.choose(options.engine, path, spec.engines)
    if options.engine == "auto" and name not in spec.engines and kind == "gguf":
        raise ConfigError(f"model {spec.name!r} lists engines {spec.engines}; none is installed")
    n_ctx = context_size(options.ctx, spec, trained_ctx)
    if n_ctx < 16:
        raise ConfigError("--ctx must be at least 16 tokens")
    engine = engines.load(name, LoadOptions(
        path=path, n_ctx=n_ctx, threads=options.threads or default_threads(),
        gpu_layers=options.gpu_layers, model_type=spec.model_type, parsed=parsed))
    template = templates.resolve(options.template or spec.template, engine.chat_template,
                                 bos=engine.bos_text, eos=engine.eos_text)
    stops = list(spec.stop)
    if template.name in templates.PRESET_STOPS:
        stops += [s for s in templates.PRESET_STOPS[template.name] if s not in stops]
    sampling = Sampling().updated(**spec.sampling).updated(**options.sampling)
    chat = Chat(engine, template, sampling, stops, system=options.system or spec.system)
    return Loaded(chat, spec, name, str(path))


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
    return Loaded(chat, spec, engine.name, spec.location)
