"""The models folder: `$XDG_DATA_HOME/chatterm/models/OWNER/REPO/FILE`, as `chatterm pull`
leaves it. A file is there only once complete and verified; downloads in progress are
`FILE.<sha256 prefix>.part` beside it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from chatterm import paths
from chatterm.models.hub import refs


@dataclass(frozen=True)
class LocalModel:
    repo: str
    file: str  # the first (or only) file
    paths: tuple[Path, ...]  # every part, present

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.paths)

    @property
    def ref(self) -> str:
        return f"{self.repo}:{self.file}"


def root() -> Path:
    return paths.downloaded_models_dir()


def free_space(folder: Path | None = None) -> tuple[Path, int]:
    """Free bytes where `folder` (the models folder) is or will be: (the nearest existing
    folder, its free bytes)."""
    folder = folder or root()
    existing = next(f for f in [folder, *folder.parents] if f.exists())
    return existing, shutil.disk_usage(existing).free


def path_for(repo: str, file: str) -> Path:
    return root() / repo / file


def local(repo: str, file: str) -> LocalModel | None:
    """The model stored as `repo`/`file`, if every part of it is on disk."""
    parts = tuple(path_for(repo, name) for name in refs.shards(file))
    return LocalModel(repo, file, parts) if all(p.is_file() for p in parts) else None


def installed() -> list[LocalModel]:
    """Every complete model in the folder, by repository and file name."""
    base = root()
    found = []
    for path in sorted(base.glob("*/*/**/*.gguf")) + sorted(base.glob("*/*/**/*.bin")):
        rel = path.relative_to(base).parts
        repo, file = "/".join(rel[:2]), "/".join(rel[2:])
        if not refs.is_later_shard(file) and (model := local(repo, file)):
            found.append(model)
    return found


def partial(repo: str, file: str) -> list[Path]:
    """Downloads of this model that were stopped before the end."""
    return [p for name in refs.shards(file) for p in path_for(repo, name).parent.glob(f"{Path(name).name}.*.part")]


def find(ref: refs.HubRef) -> LocalModel | None:
    """The downloaded model `OWNER/REPO[:FILE|:QUANT]` names, when exactly one matches."""
    models = [m for m in installed() if m.repo.lower() == ref.repo.lower()]
    chosen = refs.select(ref, [m.file for m in models])
    return next(m for m in models if m.file == chosen[0]) if len(chosen) == 1 else None


def remove(model: LocalModel) -> int:
    """Delete the model's files and any partial download of it; the bytes freed."""
    freed = 0
    for path in [*model.paths, *partial(model.repo, model.file)]:
        freed += path.stat().st_size
        path.unlink()
    folder = model.paths[0].parent
    while folder != root() and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()  # OWNER/REPO folders left empty
        folder = folder.parent
    return freed
