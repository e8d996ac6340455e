"""The memory estimate behind `--gpu-layers auto`, the RAM check and `chatterm models`,
against real files (the default model, generated ones) with stated free memory."""

from __future__ import annotations

import pytest

from chatterm.models import fit, gguf
from chatterm.models.hub import refs

MiB = 1 << 20


def test_default_model_matches_llama_cpps_own_figures(default_gguf):
    fp = fit.footprint([default_gguf], 8192)
    # llama.cpp for this file at n_ctx 8192: "CPU_Mapped model buffer size = 92.10 MiB",
    # "KV buffer size = 180.00 MiB (8192 cells, 30 layers), K (f16): 90.00 MiB, V (f16): 90.00 MiB"
    assert round(fp.weights / MiB, 2) == 92.10
    assert sum(fp.kv_per_layer) == 180 * MiB and fp.n_layers == 30
    # its compute buffer there was 166.38 MiB; the estimate covers it
    assert fp.compute + fit.RAM_MARGIN > 166.38 * MiB
    assert fit.footprint([default_gguf], 4096).kv_per_layer[0] * 2 == fp.kv_per_layer[0]


def test_layers_that_fit_a_stated_amount_of_free_vram(default_gguf):
    fp = fit.footprint([default_gguf], 4096)
    assert fp.layers_fitting(10 * 1024 * MiB) == -1  # 10 GiB: everything
    assert fp.layers_fitting(fp.on_gpu(12)) == 12  # exactly twelve layers' worth
    assert fp.layers_fitting(fp.on_gpu(12) - 1) == 11
    assert fp.layers_fitting(100 * MiB) == 0  # not even the CUDA context's margin
    # offloaded layers leave RAM: the estimate moves bytes, it does not invent them
    assert fp.in_ram(0) - fp.in_ram(12) == sum(fp.layers[-12:]) + sum(fp.kv_per_layer[-12:]) + fp.compute
    assert fp.on_gpu(-1) == sum(fp.layers) + sum(fp.kv_per_layer) + fp.output + fp.compute + fit.VRAM_MARGIN


def test_a_model_larger_than_the_ram_is_refused_with_the_numbers(default_gguf, monkeypatch):
    fp = fit.footprint([default_gguf], 8192)
    fit.check_ram(fp, 0, fp.in_ram(0), "smollm2")  # just enough: no complaint
    with pytest.raises(fit.FitError) as e:
        fit.check_ram(fp, 0, 200_000_000, "smollm2")
    text = str(e.value)
    assert "smollm2 needs about 586.3 MB of RAM at context 8192" in text and "200.0 MB is available" in text
    assert "KV cache 188.7 MB" in text
    monkeypatch.setenv(fit.SKIP_ENV, "1")
    fit.check_ram(fp, 0, 200_000_000, "smollm2")


def test_split_files_add_up(tmp_path, tiny_llama, tiny_qwen2):
    one = gguf.read(tiny_llama)
    whole = fit.footprint([one], 256)
    assert whole.weights == sum(t.nbytes for t in one.tensors)
    first = tmp_path / "m-Q8_0-00001-of-00002.gguf"
    assert fit.split_parts(first) == [first, tmp_path / "m-Q8_0-00002-of-00002.gguf"]
    assert fit.split_parts(tiny_llama) == [tiny_llama]


def test_the_loader_refuses_before_loading(tiny_llama, monkeypatch):
    from chatterm.models import hardware

    monkeypatch.setattr(hardware, "available_ram", lambda: 1000)
    from chatterm.loader import RunOptions, load

    with pytest.raises(fit.FitError, match="1.0 kB is available"):
        load(RunOptions(model=str(tiny_llama), isolated=False))


@pytest.mark.parametrize("text,repo,selector", [
    ("Qwen/Qwen2.5-1.5B-Instruct-GGUF:q4_k_m", "Qwen/Qwen2.5-1.5B-Instruct-GGUF", "q4_k_m"),
    ("bartowski/gemma-2-2b-it-GGUF", "bartowski/gemma-2-2b-it-GGUF", None),
    ("a/b:sub/file-Q8_0.gguf", "a/b", "sub/file-Q8_0.gguf"),
])
def test_hub_references(text, repo, selector):
    assert refs.parse(text) == refs.HubRef(repo, selector)


@pytest.mark.parametrize("text", ["smollm2", "./x/y.gguf", "/abs/model.gguf", "~/m/x.gguf", "a/b/c"])
def test_what_is_not_a_hub_reference(text):
    assert refs.parse(text) is None


def test_selecting_files_by_quantization():
    names = ["README.md", "m-Q4_K_M.gguf", "m-Q4_K_S.gguf", "m-Q8_0.gguf", "m-mmproj-f16.gguf",
             "big-Q4_K_M-00001-of-00003.gguf", "big-Q4_K_M-00002-of-00003.gguf", "big-Q4_K_M-00003-of-00003.gguf"]
    assert refs.select(refs.HubRef("o/r", "q8_0"), names) == ["m-Q8_0.gguf"]
    assert refs.select(refs.HubRef("o/r", "Q4_K_M"), names) == ["big-Q4_K_M-00001-of-00003.gguf", "m-Q4_K_M.gguf"]
    assert refs.select(refs.HubRef("o/r", "m-Q4_K_S.gguf"), names) == ["m-Q4_K_S.gguf"]
    assert len(refs.select(refs.HubRef("o/r", None), names)) == 4  # not the vision projector
    assert refs.shards("big-Q4_K_M-00001-of-00003.gguf")[2] == "big-Q4_K_M-00003-of-00003.gguf"
    assert refs.quantization("tinyllama-1.1b-chat-v1.0.Q4_K_M.gguf") == "Q4_K_M"
