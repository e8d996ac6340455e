"""`chatterm models add NAME PATH`: a name for a model file already on disk, written to
the user's models.toml with what the catalogue knows of the file's family (its chat
template choice, stop strings and sampling) and the file's SHA-256, so `-m NAME`, `-c`
and `chatterm show NAME` find it (ollama's `create`, llm's aliases)."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

from chatterm import paths, safe_files
from chatterm.errors import ConfigError, InputError
from chatterm.models import gguf
from chatterm.models.catalog import Catalog, ModelSpec, load_toml

NAME = re.compile(r"[A-Za-z0-9][\w.@-]{0,63}")


def add(name: str, path_text: str, replace: bool = False) -> tuple[Path, str]:
    """The entry written (the user's models.toml, the entry's text)."""
    if not NAME.fullmatch(name):
        raise InputError(f"{name!r}: a model name is letters, digits, '.', '_', '@' and '-' (at most 64)")
    path = Path(path_text).expanduser().absolute()
    unreadable = safe_files.why_unreadable(path)
    if unreadable:
        raise InputError(f"{path}: {unreadable}")
    kind = gguf.sniff(path)  # a file that is no model is one line here
    catalog = Catalog.load()
    user_file = paths.user_models_toml()
    existing = catalog.models.get(name)
    if existing is not None and not replace:
        where = "your models.toml" if existing.origin == str(user_file) else "chatterm's catalogue"
        raise InputError(f"{name!r} is already a model in {where}: choose another name"
                         + (" or give --replace" if where == "your models.toml" else ""))
    entry: dict[str, Any] = {"path": str(path)}
    if kind == "gguf":
        model = gguf.read(path)
        entry["architecture"] = model.architecture
        entry.update(_family_defaults(catalog, model.architecture))
    else:
        entry["engines"] = ["ctransformers"]
    entry["sha256"] = safe_files.sha256(path, "model file")
    entry["size"] = path.stat().st_size
    text = f"\n[models.{json.dumps(name)}]\n" + "".join(f"{key} = {_toml(value)}\n" for key, value in entry.items())
    old = user_file.read_bytes().decode("utf-8") if user_file.exists() else ""
    if existing is not None and replace and existing.origin == str(user_file):
        old = _without(old, user_file, name)
    new = old + ("" if not old or old.endswith("\n") else "\n") + text
    _check(new, user_file)
    try:
        safe_files.write_atomic(user_file, new.encode("utf-8"))
    except OSError as e:
        raise ConfigError(f"cannot write {user_file}: {e.strerror or e}") from None
    return user_file, text.strip()


def _family_defaults(catalog: Catalog, architecture: str) -> dict[str, Any]:
    """What the catalogue's own entries of this architecture set: the template choice,
    stop strings and sampling (the first entry to pull of the family, else any)."""
    family = [s for s in catalog.models.values()
              if s.architecture == architecture and s.origin != str(paths.user_models_toml())]
    family.sort(key=lambda s: not s.downloadable)  # an entry to pull is a family's plain instruct model
    if not family:
        return {}
    spec: ModelSpec = family[0]
    out: dict[str, Any] = {"engines": list(spec.engines), "template": spec.template}
    if spec.languages:
        out["languages"] = list(spec.languages)
    if spec.stop:
        out["stop"] = list(spec.stop)
    if spec.sampling:
        out["sampling"] = dict(spec.sampling)
    return out


def _toml(value: Any) -> str:
    """A TOML value: strings in JSON's escapes (TOML's basic strings read them), lists, inline tables."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=True)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"


def _without(text: str, path: Path, name: str) -> str:
    """`text` without the table of `name` (an entry this command wrote, to replace)."""
    header = re.compile(rf'^\[models\.(?:{re.escape(name)}|{re.escape(json.dumps(name))})\]\s*$', re.M)
    match = header.search(text)
    if match is None:
        raise ConfigError(f"{path}: {name!r} is not a table chatterm can replace (edit it by hand)")
    following = re.compile(r"^\[", re.M).search(text, match.end())
    return text[:match.start()] + (text[following.start():] if following else "")


def _check(text: str, path: Path) -> None:
    """The file as it would be, loaded whole: nothing is written that breaks it."""
    with tempfile.TemporaryDirectory() as folder:
        trial = Path(folder) / "models.toml"
        trial.write_text(text, encoding="utf-8")
        load_toml(trial)
        try:
            Catalog.load(trial)
        except ConfigError as e:
            raise ConfigError(str(e).replace(str(trial), str(path))) from None
