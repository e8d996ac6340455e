"""LoRA adapters (llama.cpp's GGUF adapter format) over a base model: their measured
effect, refusal of files that are not adapters for the model, switching and scaling in
the chat without reloading the base, replies recording which adapters made them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from chatterm import branches, loader, safe_files
from chatterm.engines import load
from chatterm.engines.base import LoadOptions
from chatterm.loader import RunOptions
from chatterm.models import adapters, gguf
from chatterm.records import Message
from chatterm.sessions import kv_cache
from tests.helpers import drive, one_line_error, run
from tests.modelgen import tiny_lora, tiny_model

GREEDY = {"temperature": 0.0, "seed": 0, "max_tokens": 12}
TOKEN = 33  # the vocabulary entry the output adapter pushes


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, default_gguf: gguf.GGUFFile) -> Path:
    """A tiny model with an output layer of its own (a tied one has no output.weight)."""
    return tiny_model(tmp_path_factory.mktemp("lora") / "base.gguf", default_gguf, tied=False)


def output_lora(path: Path, base: Path, b_scale: float = 1.0, rank: int = 1, seed: int = 1) -> tuple[Path, np.ndarray]:
    """An adapter of the output layer whose delta is B @ (A @ h): with rank 1, a multiple
    of B's one column, whatever the hidden state h."""
    model = gguf.read(base)
    n_embd, n_vocab = next(t.shape for t in model.tensors if t.name == "output.weight")
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((rank, n_embd)).astype(np.float32)
    b = np.zeros((n_vocab, rank), np.float32)
    b[TOKEN] = b_scale
    b[100] = -0.5 * b_scale
    return tiny_lora(path, model, {"output.weight": (a, b)}), b[:, 0]


def last_logits(engine, text: str, scales: list[float]) -> np.ndarray:
    """The next-token logits after `text`, with the adapters at `scales`."""
    engine.set_adapters(scales)
    engine.reset()
    assert engine._decode(engine.tokenize(text))
    row = engine._lib.llama_get_logits_ith(engine._ctx, -1)
    return np.ctypeslib.as_array(row, shape=(engine._n_vocab,)).copy()


def test_an_adapter_adds_its_delta_at_its_scale_and_nothing_at_zero(base, tmp_path):
    lora, column = output_lora(tmp_path / "push.gguf", base)
    engine = load("llama.cpp", LoadOptions(path=base, n_ctx=256, threads=2, adapters=((str(lora), 1.0),)))
    try:
        plain = last_logits(engine, "Hello there", [0.0])
        full = last_logits(engine, "Hello there", [1.0])
        half = last_logits(engine, "Hello there", [0.5])
        again = last_logits(engine, "Hello there", [0.0])
    finally:
        engine.close()
    delta = full - plain
    assert np.array_equal(again, plain)  # off: the base model's logits, to the bit
    assert set(np.nonzero(np.abs(delta) > 1e-4)[0]) == {TOKEN, 100}  # only where B has weight
    cosine = delta @ column / (np.linalg.norm(delta) * np.linalg.norm(column))
    assert abs(cosine) > 0.9999  # the delta is B's column, times A·h
    np.testing.assert_allclose(half - plain, delta / 2, atol=1e-3)  # linear in the scale


def test_files_that_are_not_adapters_for_the_model_are_refused_in_one_line(base, tmp_path, default_gguf):
    lora, _ = output_lora(tmp_path / "good.gguf", base)
    other_arch = tiny_lora(tmp_path / "qwen.gguf", gguf.read(base), {"output.weight": (
        np.ones((1, 64), np.float32), np.ones((len(default_gguf.metadata["tokenizer.ggml.tokens"]), 1), np.float32))},
        architecture="qwen2")
    small = tiny_model(tmp_path / "small.gguf", default_gguf, tied=False, n_embd=32)
    narrow, _ = output_lora(tmp_path / "narrow.gguf", small)
    cases = {
        str(base): "not a LoRA adapter",
        str(other_arch): "an adapter for qwen2 models; base.gguf is llama",
        str(narrow): "output.weight: lora_a [32, 1] and lora_b [1, 49152] do not fit the model's [64, 49152]",
        str(tmp_path / "missing.gguf"): "no such file",
        f"{lora}:1e9": "a scale is a number from -100 to 100",
    }
    for given, said in cases.items():
        line = one_line_error(run("-m", str(base), "--lora", given, "hi"))
        assert said in line, line
    assert "ctransformers, which cannot load one" in one_line_error(
        run("-m", str(base), "--engine", "ctransformers", "--lora", str(lora), "hi"))
    assert "is on a server" in one_line_error(run("--base-url", "http://127.0.0.1:9/v1", "--lora", str(lora), "hi"))


def test_adapters_llama_cpp_would_abort_or_crash_on_are_refused_by_name(base, tmp_path):
    """Metadata of a type llama.cpp asserts otherwise (SIGABRT in the worker), integer
    tensors (a segfault), weights or an alpha that are not finite (noise): refused
    before the worker loads, naming the adapter, never the model."""
    model = gguf.read(base)
    _, b = output_lora(tmp_path / "shape.gguf", base)
    a = np.ones((1, 64), np.float32)
    nan_a = a.copy()
    nan_a[0, 3] = np.nan
    pair = {"output.weight": (a, b[:, None])}
    cases = {
        tiny_lora(tmp_path / "alpha-text.gguf", model, pair, metadata={"adapter.lora.alpha": "8"}):
            "adapter.lora.alpha must be a float32, not a string",
        tiny_lora(tmp_path / "alpha-list.gguf", model, pair, metadata={"adapter.lora.alpha": [1.0]}):
            "adapter.lora.alpha must be a float32, not a array",
        tiny_lora(tmp_path / "alpha-u32.gguf", model, pair, metadata={"adapter.lora.alpha": 4}):
            "adapter.lora.alpha must be a float32, not a u32",
        tiny_lora(tmp_path / "alpha-nan.gguf", model, pair, alpha=float("nan")):
            "adapter.lora.alpha is nan, not a finite number",
        tiny_lora(tmp_path / "int32.gguf", model, pair, tensor_type=26):
            "tensor 'output.weight.lora_a' is of type I32; a LoRA pair is F32, F16, BF16, Q8_0",
        tiny_lora(tmp_path / "int8.gguf", model, pair, tensor_type=24): "is of type I8",
        tiny_lora(tmp_path / "nan.gguf", model, {"output.weight": (nan_a, b[:, None])}):
            "tensor 'output.weight.lora_a' holds values that are not finite numbers",
        tiny_lora(tmp_path / "inf.gguf", model, {"output.weight": (a, np.where(b[:, None] != 0, np.inf, 0).astype(np.float32))}): "not finite",
    }
    for lora, said in cases.items():
        line = one_line_error(run("-m", str(base), "--lora", str(lora), "hi"))
        assert said in line and str(lora) in line and "model" not in line.replace(str(base), ""), line


def test_an_adapter_given_twice_is_refused_and_scales_are_plain_numbers(base, tmp_path):
    lora, _ = output_lora(tmp_path / "good.gguf", base)
    (tmp_path / "same").mkdir()
    copy = tmp_path / "same" / "good.gguf"
    copy.write_bytes(lora.read_bytes())
    for twice in ([str(lora), f"{lora}:0.5"], [str(lora), str(copy)]):
        line = one_line_error(run("-m", str(base), *[a for t in twice for a in ("--lora", t)], "hi"))
        assert "is given twice" in line, line
    # Python's number parsers take these; a scale is plain ASCII: the colon is part of a path
    for scale in ("1_0", " 5 ", "\u0665", "nan", "inf", "1e999"):
        assert adapters.parse(f"x.gguf:{scale}") == (f"x.gguf:{scale}", 1.0)
    assert adapters.parse("x.gguf:0.5") == ("x.gguf", 0.5) and adapters.parse("x.gguf:-1e-1") == ("x.gguf", -0.1)


def test_the_file_checked_is_the_file_loaded(base, tmp_path, monkeypatch):
    """A file swapped between the check and the load changes nothing: the copy that
    was hashed and checked is what the engine loads, and what the reply records."""
    good, _ = output_lora(tmp_path / "push.gguf", base, b_scale=50.0)
    digest = safe_files.sha256(good)
    stage = adapters.stage

    def staged_then_swapped(path):
        staged = stage(path)
        model = gguf.read(base)
        n_embd, n_vocab = next(t.shape for t in model.tensors if t.name == "output.weight")
        tiny_lora(path, model, {"output.weight": (np.ones((1, n_embd), np.float32),
                                                  np.full((n_vocab, 1), np.nan, np.float32))})
        return staged

    monkeypatch.setattr(adapters, "stage", staged_then_swapped)
    model = loader.load(RunOptions(model=str(base), adapters=(str(good),), isolated=False))
    try:
        (adapter,) = model.adapters
        assert adapter.sha256 == digest and safe_files.sha256(adapter.loaded) == digest
        assert safe_files.sha256(good) != digest  # the original was swapped after the copy
        plain = last_logits(model.backend.engine, "Hello", [0.0])
        delta = last_logits(model.backend.engine, "Hello", [1.0]) - plain
    finally:
        model.close()
    assert np.isfinite(delta).all()  # the swapped-in file's NaN never loaded
    assert set(np.nonzero(np.abs(delta) > 1e-4)[0]) == {TOKEN, 100}  # the checked adapter's delta


def test_an_entrys_adapters_load_with_it_and_a_bad_entry_is_one_line(base, tmp_path, user_models_toml):
    lora, _ = output_lora(tmp_path / "push.gguf", base, b_scale=50.0)
    user_models_toml(f'[models.tiny]\npath = "{base}"\nadapters = [{{path = "{lora}", scale = 0.5}}]\n')
    model = loader.load(RunOptions(model="tiny", isolated=False))
    try:
        assert [(a.name, a.scale, a.sha256) for a in model.adapters] == [("push", 0.5, safe_files.sha256(lora))]
    finally:
        model.close()
    user_models_toml(f'[models.tiny]\npath = "{base}"\nadapters = ["{lora}"]\n')
    assert "each adapter is a table" in one_line_error(run("-m", "tiny", "hi"))


def test_switching_and_scaling_in_the_chat_keeps_the_base_loaded(base, tmp_path, chatterm):
    lora, _ = output_lora(tmp_path / "push.gguf", base, b_scale=50.0, rank=2)
    options = RunOptions(model=str(base), adapters=(str(lora),), sampling=GREEDY, threads=2)
    loaded = loader.load(options)
    try:
        loaded.wait_ready()
        pid = loaded.worker_pid
        keys = ("Tell me a story.\r" "/lora\r" "/lora off push\r" "/retry\r" "/lora on push\r" "/retry\r"
                "/retry --base\r" "/alt\r" "/alt 1\r" "/lora scale push 0.25\r" "/lora scale nothing 1\r")
        repl, out = drive(keys, loaded, options=options)
        assert loaded.worker_pid == pid  # every switch on the same worker: the base never reloaded
        assert "+ lora push×0.25 ·" in repl.toolbar()[0][1]
    finally:
        loaded.close()
    assert re.search(r"push\s+scale 1\s+sha256 [0-9a-f]{12}", out)
    assert "push off: the next reply reads the conversation again" in out
    assert "push at scale 0.25" in out and "no LoRA adapter 'nothing'; loaded: push" in out
    stored = repl.conversation.session.messages
    versions = [Message.of(v[0]) for v in branches.versions(stored, len(stored) - 1)]
    with_adapter, off, on_again, base_only = [(v.content, [a.text for a in v.adapters]) for v in versions]
    assert with_adapter[1] == ["push×1"] and on_again == with_adapter  # the same greedy reply, recorded with it
    assert off[1] == [] and base_only == off  # off, and /retry --base: the base model's reply
    assert off[0] != with_adapter[0]  # the adapter changes what is said
    assert "lora push×1" in out  # /alt shows which versions an adapter made
    assert stored[-1]["adapters"] == [{"name": "push", "sha256": safe_files.sha256(lora), "scale": 1.0}]
    # the version chosen (/alt 1), made with push; cut at max_tokens, so --include-cut
    exported = chatterm("export", "--unrated", "--include-cut", repl.conversation.session.name)
    record = json.loads(exported.stdout.decode().splitlines()[0])
    assert record["messages"][-1]["adapters"][0]["sha256"] == safe_files.sha256(lora)


def test_a_saved_cache_belongs_to_one_set_of_adapters():
    plain = kv_cache.model_key("/m.gguf", "llama.cpp", 512, "fast")
    assert plain == kv_cache.model_key("/m.gguf", "llama.cpp", 512, "fast", [])
    tuned = kv_cache.model_key("/m.gguf", "llama.cpp", 512, "fast", [{"name": "a", "sha256": "1" * 64, "scale": 1.0}])
    halved = kv_cache.model_key("/m.gguf", "llama.cpp", 512, "fast", [{"name": "a", "sha256": "1" * 64, "scale": 0.5}])
    assert len({plain, tuned, halved}) == 3


@pytest.mark.realmodel
@pytest.mark.slow
def test_an_adapter_on_qwen_coder_switches_without_reloading(qwen_coder, tmp_path):
    """The real model people run: an adapter of its output layer (151,936 rows) checked,
    loaded in the worker, switched off and on mid-chat on the same worker; off, the
    reply is the base model's to the token."""
    model = gguf.read(qwen_coder)
    n_embd, n_vocab = next(t.shape for t in model.tensors if t.name == "output.weight")
    rng = np.random.default_rng(7)
    a = rng.standard_normal((2, n_embd)).astype(np.float32)
    b = rng.standard_normal((n_vocab, 2)).astype(np.float32) * 3
    lora = tiny_lora(tmp_path / "qwen-noise.gguf", model, {"output.weight": (a, b)})
    options = RunOptions(model=str(qwen_coder), adapters=(f"{lora}:0",), threads=2,
                         sampling={"temperature": 0.0, "seed": 0, "max_tokens": 8})
    loaded = loader.load(options)
    try:
        chat = loader.conversation(loaded, options)
        base_reply = "".join(e for e in chat.send("What is the capital of France?") if isinstance(e, str))
        pid = loaded.worker_pid
        assert loaded.set_adapter("qwen-noise", 1.0)
        tuned = "".join(e for e in chat.retry() if isinstance(e, str))
        assert not loaded.set_adapter("qwen-noise", 1.0)  # the same set: the cache is kept
        loaded.set_adapter("qwen-noise", 0.0)
        again = "".join(e for e in chat.retry() if isinstance(e, str))
        assert loaded.worker_pid == pid
    finally:
        loaded.close()
    assert "Paris" in base_reply and again == base_reply and tuned != base_reply
    recorded = [Message.of(v[0]).adapters for v in branches.versions(chat.messages, len(chat.messages) - 1)]
    assert [[u.scale for u in used] for used in recorded] == [[], [1.0], []]


def test_adapters_in_a_real_terminal(spawn, base, tmp_path):
    lora, _ = output_lora(tmp_path / "push.gguf", base, b_scale=50.0)
    child = spawn("-m", str(base), "--lora", f"{lora}:0.5", "--temperature", "0", "--max-tokens", "6")
    child.expect(r"LoRA adapters: push×0\.5")
    child.ask("Hello", "›")
    child.sendline("/lora off push")
    child.expect("push off: the next reply reads the conversation again")
    child.sendline("/lora")
    child.expect(r"push\s+off \(on: scale 0\.5\)")
    child.sendline("/lora on push")
    child.expect(r"push at scale 0\.5")
    child.quit()
