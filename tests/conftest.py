"""Fixtures shared by every test module: private folders, the default model, tiny
generated models, a scripted model, the real program (piped and in a terminal) and
the user's models.toml."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chatterm import paths
from chatterm.loader import Model, RunOptions, conversation
from chatterm.models import gguf
from chatterm.models.catalog import Catalog
from tests import helpers
from tests.fakes import fake_loaded
from tests.modelgen import tiny_model


def fetcher() -> Any:
    """bench/fetch_models.py as a module (it lives outside the package)."""
    if "fetch_models" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fetch_models", ROOT / "bench" / "fetch_models.py")
        assert spec is not None and spec.loader is not None
        module = sys.modules["fetch_models"] = importlib.util.module_from_spec(spec)  # dataclasses look it up
        spec.loader.exec_module(module)
    return sys.modules["fetch_models"]


def _real_models() -> dict[str, Path | None]:
    """The real models bench/fetch_models.py fetched, looked up once, before any test
    moves the cache folder (`private_dirs`)."""
    return {name: fetcher().fetched(model) for name, model in fetcher().MODELS.items()}


ROOT = Path(__file__).resolve().parent.parent
REAL_MODELS = _real_models()
CONVERTER = fetcher().converter_folder()  # looked up before `private_dirs` moves the cache


@pytest.fixture(scope="session")
def qwen_coder() -> Path:
    """Qwen2.5-Coder-1.5B-Instruct Q4_K_M (tests marked `realmodel`). CI fetches it
    first (.ci/run), so there its absence fails; elsewhere those tests skip."""
    path = REAL_MODELS["qwen2.5-coder-1.5b"]
    if path is None:
        message = "the real model is not fetched: python3 bench/fetch_models.py"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def llama_cpp_converter() -> Path:
    """llama.cpp's convert_lora_to_gguf.py of the installed llama-cpp-python, as
    bench/fetch_models.py fetches it (CI does: there its absence fails)."""
    folder = CONVERTER
    if folder is None or not (folder / "convert_lora_to_gguf.py").is_file():
        message = "llama.cpp's converter is not fetched: python3 bench/fetch_models.py"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


@pytest.fixture(autouse=True)
def private_dirs(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own config, data, cache and state folders (never the user's)."""
    home = tmp_path_factory.mktemp("home")
    for var, sub in (("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"), ("XDG_CACHE_HOME", "cache"),
                     ("XDG_STATE_HOME", "state")):
        monkeypatch.setenv(var, str(home / sub))
    return home


@pytest.fixture
def user_models_toml() -> Callable[[str], Path]:
    """Write the user's models.toml (in this test's private config folder)."""
    def write(text: str) -> Path:
        path = paths.user_models_toml()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path
    return write


@pytest.fixture
def fake_model() -> Callable[..., Model]:
    """A scripted model (`tests.fakes.fake_loaded`): fake_model("reply one", "reply two")."""
    return fake_loaded


@pytest.fixture
def fake_conversation(fake_model):
    """A conversation with a scripted model: fake_conversation("reply", n_ctx=...)."""
    def make(*replies: str, **kw):
        loaded = fake_model(*replies, **kw)
        return conversation(loaded, RunOptions())
    return make


@pytest.fixture
def chatterm() -> Callable:
    """The real program, piped, run to completion (`tests.helpers.run`)."""
    return helpers.run


@pytest.fixture
def spawn(private_dirs):
    """The real program in a pseudo terminal (`tests.helpers.Terminal`), killed at the end."""
    started: list[helpers.Terminal] = []

    def start(*args: str, ready: str = "/help for commands", **kw) -> helpers.Terminal:
        terminal = helpers.Terminal(*args, **kw)
        started.append(terminal)
        if ready:
            terminal.expect(ready)
        return terminal
    yield start
    for terminal in started:
        terminal.terminate(force=True)


@pytest.fixture(scope="session")
def default_model_path() -> Path:
    path = Catalog.load().models["smollm2"].model_path()
    assert path.is_file(), "the embedded default model must be installed with chatterm"
    return path


@pytest.fixture(scope="session")
def default_gguf(default_model_path: Path) -> gguf.GGUFFile:
    return gguf.read(default_model_path)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, default_gguf: gguf.GGUFFile) -> Path:
    return tiny_model(tmp_path_factory.mktemp("models") / "tiny-llama.gguf", default_gguf)


@pytest.fixture(scope="session")
def tiny_qwen2(tmp_path_factory: pytest.TempPathFactory, default_gguf: gguf.GGUFFile) -> Path:
    return tiny_model(tmp_path_factory.mktemp("models") / "tiny-qwen2.gguf", default_gguf,
                      architecture="qwen2")


@pytest.fixture(scope="session")
def hub_files(default_model_path: Path, tiny_llama: Path) -> dict[str, bytes]:
    return {"smol": default_model_path.read_bytes(), "tiny": tiny_llama.read_bytes()}


@pytest.fixture
def hub(hub_files, monkeypatch, tmp_path):
    """A local Hugging Face hub (`tests.hubserver`) that chatterm is pointed at: the default
    model, a tiny generated one in two quantizations, a split file, a gated repository."""
    from tests.hubserver import Hub, HubFile, Repo, serve

    tiny = hub_files["tiny"]
    half = len(tiny) // 2
    repos = {
        "local/smol-GGUF": Repo({"SmolLM2-135M-Instruct.Q4_1.gguf": HubFile(hub_files["smol"]),
                                 "README.md": HubFile(b"# SmolLM2\n")}),
        "local/tiny-GGUF": Repo({"tiny-Q8_0.gguf": HubFile(tiny), "tiny-Q4_K_M.gguf": HubFile(tiny + b"")}),
        "local/split-GGUF": Repo({"big-Q4_K_M-00001-of-00002.gguf": HubFile(tiny[:half]),
                                  "big-Q4_K_M-00002-of-00002.gguf": HubFile(tiny[half:])}),
        "local/gated-GGUF": Repo({"tiny-Q8_0.gguf": HubFile(tiny)}, gated=True),
    }
    server, served = serve(Hub(repos))
    monkeypatch.setenv("HF_ENDPOINT", served.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no token the user stored
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    yield served
    server.shutdown()
