"""The model catalogue: models.toml shipped with chatterm, plus the user's own.

The user's `$XDG_CONFIG_HOME/chatterm/models.toml` adds entries and replaces packaged
entries of the same name whole (a partial merge could leave two sources in one entry).
Every problem names the file, the entry and what is wrong.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatterm import paths, safe_files, settings
from chatterm.errors import ConfigError, ModelFileError
from chatterm.models import adapters
from chatterm.models.chat_templates import CHOICES
from chatterm.models.engine_names import ENGINE_NAMES
from chatterm.models.hub import refs

if TYPE_CHECKING:
    from chatterm.models.hub.store import LocalModel

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SOURCE_KEYS = ("path", "package", "hf_repo", "base_url")
REMOTE_KEYS = {"model", "api_key_env", "timeout"}  # entries with base_url only
FACT_KEYS = {"sha256", "size", "params", "quant", "languages"}  # what `chatterm models` shows
ENTRY_KEYS = {"description", *SOURCE_KEYS, "file", "engines", "architecture", "model_type",
              "template", "context_length", "stop", "sampling", "system", "draft", "adapters", *REMOTE_KEYS, *FACT_KEYS}


@dataclass
class ModelSpec:
    name: str
    source: str  # "path" | "package" | "hf_repo" | "base_url"
    location: str  # the path, the package name, the repository or the server's URL
    file: str | None = None
    engines: list[str] = field(default_factory=lambda: list(ENGINE_NAMES))
    architecture: str | None = None
    model_type: str | None = None  # ctransformers' model_type for GGML files
    template: str = "gguf"
    context_length: int | None = None
    stop: list[str] = field(default_factory=list)
    sampling: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    system: str | None = None  # default system prompt; -s replaces it
    origin: str = ""  # the models.toml it came from
    remote_model: str | None = None  # base_url entries: the server's name for the model
    api_key_env: str | None = None  # base_url entries: the variable holding the API key
    timeout: float = 60.0  # base_url entries: seconds to wait for the server
    sha256: list[str] = field(default_factory=list)  # hf_repo entries: of each file (split GGUF: each part)
    size: int | None = None  # bytes on disk, all parts
    params: str | None = None  # "1.5B"
    quant: str | None = None  # "Q4_K_M"
    languages: list[str] = field(default_factory=list)  # what it chats well in: "en", "zh"
    draft: str | None = None  # an entry (or file) of the same vocabulary that drafts for speculative decoding
    adapters: list[tuple[str, float]] = field(default_factory=list)  # LoRA adapters: (file, scale)

    @property
    def remote(self) -> bool:
        return self.source == "base_url"

    @property
    def downloadable(self) -> bool:
        return self.source == "hf_repo"

    def downloaded(self) -> LocalModel | None:
        from chatterm.models.hub import store

        return store.local(self.location, str(self.file)) if self.downloadable else None

    def model_path(self) -> Path:
        """The local file; a ModelFileError says how to get it when it is missing."""
        if self.source == "path":
            path = Path(self.location).expanduser()
            if not path.is_absolute() and self.origin:
                path = Path(self.origin).parent / path
            return path
        if self.source == "package":
            spec = importlib.util.find_spec(self.location)  # finds it without importing it
            if spec is None or not spec.submodule_search_locations:
                raise ModelFileError(f"model {self.name!r} comes in the Python package "
                                     f"{self.location!r}, which is not installed "
                                     f"(pip install {self.location.replace('_', '-')})")
            path = Path(list(spec.submodule_search_locations)[0]) / str(self.file)
            if not path.is_file():
                raise ModelFileError(f"model {self.name!r}: {path} is missing from the installed "
                                     f"package {self.location!r}; reinstall it")
            return path
        local = self.downloaded()
        if local is None:
            raise NotDownloaded(self)
        return local.paths[0]


class NotDownloaded(ModelFileError):
    """A catalogue model from the hub that is not on disk yet: `chatterm pull` gets it."""

    def __init__(self, spec: ModelSpec):
        size = f", {spec.size / 1e9:.1f} GB" if spec.size else ""
        super().__init__(f"model {spec.name!r} is not downloaded yet: chatterm pull {spec.name} "
                         f"(from {spec.location}{size})")
        self.spec = spec


def packaged_toml() -> Path:
    """models.toml inside the installed package; in a source checkout, the repo's own."""
    package = Path(__file__).resolve().parents[1]  # chatterm/ (pyproject's force-include puts it there)
    packaged = package / "models.toml"
    return packaged if packaged.exists() else package.parent / "models.toml"


MAX_TOML = 4 << 20  # bytes: a configuration file, not a data set


def load_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(safe_files.read_bytes(path, MAX_TOML, what="configuration file").decode("utf-8"))
    except safe_files.RefusedFile as e:
        raise ConfigError(str(e)) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None


def _entry(path: Path, name: str, raw: Any) -> ModelSpec:
    where = f"{path}: [models.{name}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(raw) - ENTRY_KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key {sorted(unknown)[0]!r} "
                          f"(allowed: {', '.join(sorted(ENTRY_KEYS))})")
    sources = [k for k in SOURCE_KEYS if k in raw]
    if len(sources) != 1:
        raise ConfigError(f"{where}: needs exactly one of path, package, hf_repo "
                          f"(has {', '.join(sources) or 'none'})")
    source = sources[0]
    if source in ("package", "hf_repo") and not isinstance(raw.get("file"), str):
        raise ConfigError(f"{where}: {source} needs a 'file' name")
    if source != "base_url" and REMOTE_KEYS & set(raw):
        raise ConfigError(f"{where}: {sorted(REMOTE_KEYS & set(raw))[0]} is for base_url entries only")

    def typed(key: str, kind: type, default: Any = None) -> Any:
        value = raw.get(key, default)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
            raise ConfigError(f"{where}: {key} must be a {kind.__name__}, not {type(value).__name__}")
        return value

    def number(key: str, low: float, high: float, unit: str, kind: type = int, default: Any = None) -> Any:
        """`key`'s value, a number from `low` to `high` (`unit` says what it counts)."""
        value = raw.get(key, default)
        if value is None:
            return None
        kinds = (int,) if kind is int else (int, float)
        if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:  # NaN fails too
            what = "an integer" if kind is int else "a number"
            bounds = f"{int(low):,} to {int(high):,}" if kind is int else f"{low:g} to {high:g}"
            raise ConfigError(f"{where}: {key} must be {what} of {unit} from {bounds}, "
                              f"not {settings.shown_number(value) if isinstance(value, (int, float)) else repr(value)}")
        return kind(value)

    location = typed(source, str)
    if source == "base_url":
        timeout = number("timeout", 0.001, 86400, "seconds", float, 60.0)
        api_key_env = typed("api_key_env", str)
        if api_key_env is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", api_key_env):
            raise ConfigError(f"{where}: api_key_env must name an environment variable, not hold the key")
        # gguf: the server's own; a preset enables /continue
        template = _template(where, typed("template", str, "gguf"))
        if "adapters" in raw:
            raise ConfigError(f"{where}: adapters are for local models (a server loads its own)")
        return ModelSpec(name=name, source=source, location=location, engines=["remote"],
                         template=template, context_length=number("context_length", 16, CONTEXT_MAX, "tokens"),
                         sampling=_sampling(where, typed("sampling", dict, {})),
                         description=typed("description", str, ""), system=typed("system", str),
                         origin=str(path), remote_model=typed("model", str),
                         api_key_env=api_key_env, timeout=float(timeout))
    engines = typed("engines", list, list(ENGINE_NAMES))
    bad = [e for e in engines if e not in ENGINE_NAMES]
    if bad or not engines:
        raise ConfigError(f"{where}: engines must name {' and/or '.join(ENGINE_NAMES)} "
                          f"(got {bad[0] if bad else 'none'!r})")
    template = _template(where, typed("template", str, "gguf"))
    ctx = number("context_length", 16, CONTEXT_MAX, "tokens")
    stop = typed("stop", list, [])
    if not all(isinstance(s, str) and s for s in stop):
        raise ConfigError(f"{where}: stop must be a list of non-empty strings")
    sampling = _sampling(where, typed("sampling", dict, {}))
    sha256 = raw.get("sha256", [])
    sha256 = [sha256] if isinstance(sha256, str) else sha256
    if not isinstance(sha256, list) or not all(isinstance(s, str) and re.fullmatch(r"[0-9a-f]{64}", s)
                                                 for s in sha256):
        raise ConfigError(f"{where}: sha256 must be 64 lower-case hex digits (a list for a split file)")
    if sha256 and source == "hf_repo" and len(sha256) != len(refs.shards(str(raw["file"]))):
        raise ConfigError(f"{where}: sha256 needs one digest for each of the "
                          f"{len(refs.shards(str(raw['file'])))} parts of {raw['file']}")
    size = number("size", 1, 2**50, "bytes")
    languages = typed("languages", list, [])
    if not all(isinstance(s, str) for s in languages):
        raise ConfigError(f"{where}: languages must be a list of language codes such as \"en\", \"zh\"")
    return ModelSpec(name=name, source=source, location=location, file=typed("file", str),
                     sha256=sha256, size=size, params=typed("params", str), quant=typed("quant", str),
                     languages=languages,
                     engines=engines, architecture=typed("architecture", str),
                     model_type=typed("model_type", str), template=template,
                     context_length=ctx, stop=stop, sampling=sampling,
                     description=typed("description", str, ""), system=typed("system", str),
                     origin=str(path), draft=typed("draft", str), adapters=_adapters(where, raw.get("adapters", [])))


CONTEXT_MAX = 1 << 24  # tokens: more than any model's window, less than an engine's int


def _adapters(where: str, raw: object) -> list[tuple[str, float]]:
    """`adapters = [{path = "...", scale = 0.8}, ...]`: LoRA adapters loaded with the model."""
    if not isinstance(raw, list):
        raise ConfigError(f"{where}: adapters must be a list of tables, each with a path (and a scale)")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("path"), str) or set(item) - {"path", "scale"}:
            raise ConfigError(f"{where}: each adapter is a table {{path = \"FILE.gguf\", scale = 1.0}}")
        scale = item.get("scale", 1.0)
        limit = adapters.SCALE_MAX
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not -limit <= scale <= limit:
            shown = settings.shown_number(scale) if isinstance(scale, (int, float)) else repr(scale)
            raise ConfigError(f"{where}: adapter {item['path']}: scale must be a number "
                              f"from {-limit:g} to {limit:g}, not {shown}")
        out.append((item["path"], float(scale)))
    return out


def _sampling(where: str, sampling: dict) -> dict:
    try:
        return settings.validated(sampling, where)
    except settings.SettingError as e:
        raise ConfigError(str(e)) from None


def _template(where: str, template: str) -> str:
    if template not in CHOICES:
        raise ConfigError(f"{where}: template {template!r} is not one of {', '.join(CHOICES)}")
    return template


def remote_spec(base_url: str, model: str | None, api_key_env: str | None) -> ModelSpec:
    """The entry `--base-url` stands for: the server's model `model` (or its first)."""
    return ModelSpec(name=model or "remote", source="base_url", location=base_url, engines=["remote"],
                     remote_model=model, api_key_env=api_key_env)


class Catalog:
    def __init__(self, models: dict[str, ModelSpec], default: str):
        self.models = models
        self.default = default

    @classmethod
    def load(cls, user_file: Path | None = None) -> Catalog:
        models: dict[str, ModelSpec] = {}
        default = "smollm2"
        files = [packaged_toml()]
        user_file = user_file or paths.user_models_toml()
        if user_file.exists():
            files.append(user_file)
        for path in files:
            data = load_toml(path)
            unknown = set(data) - {"default", "models"}
            if unknown:
                raise ConfigError(f"{path}: unknown top-level key {sorted(unknown)[0]!r}")
            table = data.get("models", {})
            if not isinstance(table, dict):
                raise ConfigError(f"{path}: 'models' must be a table of [models.NAME] entries")
            for name, raw in table.items():
                models[name] = _entry(path, name, raw)
            if "default" in data:
                if not isinstance(data["default"], str):
                    raise ConfigError(f"{path}: default must be a model name")
                default = data["default"]
        if default not in models:
            raise ConfigError(f"default model {default!r} is not in the catalogue")
        return cls(models, default)

    def find(self, name_or_path: str | None) -> ModelSpec:
        """A catalogue name, a model pulled from the hub (`OWNER/REPO[:FILE|:QUANT]`), or a
        path to any .gguf/.bin file."""
        name = name_or_path or self.default
        if name in self.models:
            return self.models[name]
        path = Path(name).expanduser()
        model_suffix = path.suffix.lower() in (".gguf", ".bin", ".ggml")
        ref = refs.parse(name)
        if ref and not path.exists() and (ref.selector or not model_suffix):
            return self._pulled(ref)
        if model_suffix or path.exists() or "/" in name:
            return ModelSpec(name=path.name, source="path", location=str(path.absolute()))
        raise ConfigError(f"unknown model {name!r}: not in models.toml "
                          f"({', '.join(sorted(self.models))}) and not a model file path")

    def _pulled(self, ref: refs.HubRef) -> ModelSpec:
        from chatterm.models.hub import store

        model = store.find(ref)
        if model is None:
            raise ModelFileError(f"{ref} is not downloaded (or names several files): chatterm pull {ref}")
        entry = self.by_file(model.repo, model.file)
        if entry:
            return entry
        return ModelSpec(name=model.ref, source="path", location=str(model.paths[0]))

    def by_file(self, repo: str, file: str) -> ModelSpec | None:
        """The catalogue entry for a file pulled from the hub, if it has one."""
        return next((s for s in self.models.values()
                     if s.downloadable and s.location == repo and s.file == file), None)
