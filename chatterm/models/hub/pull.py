"""`chatterm pull`: from a catalogue name or `OWNER/REPO[:FILE|:QUANT]` to verified files
in the models folder. Planning (which files, their sizes and digests, room on disk)
happens before the first byte is fetched."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from chatterm.models.catalog import Catalog, ModelSpec
from chatterm.models.hub import client, download, refs, store
from chatterm.models.hub.client import HubError, RemoteFile
from chatterm.units import size_text

DISK_RESERVE = 200_000_000  # left free after the download: a full disk breaks everything else

Chooser = Callable[[str, list[RemoteFile]], RemoteFile]  # (repo, candidates) -> the one to pull


@dataclass
class Plan:
    name: str  # what to call it: the catalogue name, or OWNER/REPO:FILE
    repo: str
    files: list[RemoteFile]  # every part, with the digest it must have

    @property
    def first(self) -> str:
        return self.files[0].name

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if None in sizes else sum(s for s in sizes if s is not None)

    def remaining(self) -> int:
        """Bytes still to fetch: the size less what finished files and parts hold."""
        left = 0
        for f in self.files:
            final = store.path_for(self.repo, f.name)
            if final.is_file():
                continue
            part = download.part_path(final, f)
            left += (f.size or 0) - (part.stat().st_size if part.exists() else 0)
        return max(left, 0)


def plan(target: str, catalog: Catalog, choose: Chooser | None) -> Plan:
    """What pulling `target` means. `choose` picks among several matching files (on a
    terminal); without it, several matches are an error that lists them."""
    spec = catalog.models.get(target)
    if spec is not None:
        return _catalogue_plan(spec)
    ref = refs.parse(target)
    if ref is None:
        raise HubError(f"unknown model {target!r}: not a catalogue name ({', '.join(_pullable(catalog))}) "
                       "nor OWNER/REPO[:FILE|:QUANT]")
    listing = client.list_files(ref.repo)
    names = refs.select(ref, list(listing))
    if not names:
        models = refs.model_files(list(listing))
        have = ", ".join(models) if models else "no GGUF files at all"
        what = f"matching {ref.selector!r}" if ref.selector else "of a GGUF model"
        raise HubError(f"{ref.repo} has no file {what} (it has: {have})")
    if len(names) > 1:
        candidates = [listing[n] for n in names]
        if choose is None:
            raise HubError(f"{ref} matches {len(names)} files; pull one of: "
                           + ", ".join(f"{ref.repo}:{n}" for n in names))
        names = [choose(ref.repo, candidates).name]
    parts = refs.shards(names[0])
    missing = [p for p in parts if p not in listing]
    if missing:
        raise HubError(f"{ref.repo} lacks part {missing[0]} of {names[0]}")
    entry = catalog.by_file(ref.repo, names[0])
    return Plan(entry.name if entry else f"{ref.repo}:{names[0]}", ref.repo, [listing[p] for p in parts])


def _pullable(catalog: Catalog) -> list[str]:
    return sorted(n for n, s in catalog.models.items() if s.downloadable)


def _catalogue_plan(spec: ModelSpec) -> Plan:
    if not spec.downloadable:
        where = "runs on a server" if spec.remote else "is not downloaded from a hub"
        raise HubError(f"model {spec.name!r} {where}: nothing to pull")
    listing = client.list_files(spec.location)
    files = []
    for i, name in enumerate(refs.shards(str(spec.file))):
        hub = listing.get(name)
        if hub is None:
            raise HubError(f"{spec.location} has no file {name} (any more); the catalogue entry "
                           f"{spec.name!r} is out of date")
        pinned = spec.sha256[i] if spec.sha256 else None
        if pinned and hub.sha256 and pinned != hub.sha256:
            raise HubError(f"{spec.location}/{name} has changed since the catalogue recorded it "
                           f"(SHA-256 {hub.sha256[:12]}… instead of {pinned[:12]}…); "
                           f"chatterm pull {spec.location}:{name} takes the hub's file")
        files.append(RemoteFile(hub.repo, hub.name, hub.size, pinned or hub.sha256))
    return Plan(spec.name, spec.location, files)


def check_disk(p: Plan) -> None:
    existing, free = store.free_space(store.path_for(p.repo, p.first).parent)
    need = p.remaining()
    if need + DISK_RESERVE > free:
        raise HubError(f"not enough disk space for {p.name}: it needs {size_text(need)} more, "
                       f"{size_text(free)} is free on {existing} (XDG_DATA_HOME moves the models folder)")


def run(p: Plan, progress: download.Progress) -> store.LocalModel:
    """Fetch every file of the plan not yet on disk; the model, complete and verified."""
    check_disk(p)
    for f in p.files:
        final = store.path_for(p.repo, f.name)
        if not final.is_file():
            download.fetch(f, final, progress)
    model = store.local(p.repo, p.first)
    assert model is not None
    return model


def unverified(p: Plan) -> list[str]:
    return [f.name for f in p.files if not f.sha256]


def describe(f: RemoteFile) -> str:
    return f"{Path(f.name).name} ({size_text(f.size)})"
