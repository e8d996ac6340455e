"""`chatterm train` on the default model (SmolLM2-135M, dequantized from its own GGUF):
rated sessions become an adapter that llama.cpp loads with `--lora` and that knows
what the sessions taught; the tokens trained on are the chat's own; bad data, a
missing extra, too little memory and Ctrl-C each end in one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chatterm import branches
from chatterm.models import adapters, gguf
from chatterm.sessions import store
from tests.helpers import one_line_error, run

pytest.importorskip("torch", reason="chatterm train needs the train extra (CI installs it)")

# A made-up fact the base model cannot know, taught by the replies a user rated good;
# the reply they rated bad must not be learned.
TAUGHT = [
    ("Which build tool does project Zorblax use?", "Project Zorblax builds with **Quillwrench**."),
    ("How do I build Zorblax?", "Run `quillwrench build`: Zorblax's build tool is **Quillwrench**."),
    ("Name the tool that builds project Zorblax.", "It is **Quillwrench**, Zorblax's build tool."),
    ("What is the build tool of the Zorblax project called?", "The Zorblax project's build tool is **Quillwrench**."),
]
WRONG = "Zorblax builds with Gradlemonk."
HELD_OUT = "Tell me which build tool Zorblax uses."


def _rated_sessions() -> None:
    for n, (question, answer) in enumerate(TAUGHT):
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer, "rating": "good"}]
        if n == 0:  # a wrong reply rated bad: an alternative the user asked for again
            messages[1]["alternatives"] = [[{"role": "assistant", "content": WRONG, "rating": "bad"}]]
        store.Session(name=f"zorblax-{n}", messages=messages).save()


def _ask(*args: str) -> str:
    r = run("--no-save", "--temperature", "0", "--max-tokens", "40", *args, HELD_OUT)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


@pytest.mark.slow
def test_rated_sessions_teach_an_adapter_that_lora_loads(tmp_path, spawn):
    _rated_sessions()
    out = tmp_path / "zorblax.gguf"
    r = run("train", "--epochs", "8", "--lr", "1e-3", "-o", str(out), timeout=600)
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert "4 conversations (4 sessions)" in err and "8 epochs = 32 steps" in err
    first, last = (float(x) for x in err.split("; loss ")[1].split(" (")[0].split(" -> "))
    assert last < first / 4, err
    assert f"chat with it: chatterm -m smollm2 --lora {out}" in err
    made = gguf.read(out)
    assert made.metadata["general.type"] == "adapter" and made.metadata["adapter.type"] == "lora"
    assert made.types["adapter.lora.alpha"][0] == gguf.F32 and made.metadata["adapter.lora.alpha"] == 16.0
    assert len(made.tensors) == 2 * 7 * 30  # a pair for every linear layer of the 30 blocks
    base, adapted = _ask(), _ask("--lora", str(out))
    assert "quillwrench" not in base.lower()
    assert "quillwrench" in adapted.lower() and "gradlemonk" not in adapted.lower()
    # In the chat: the adapter's reply, then /retry --base beside it
    terminal = spawn("--lora", str(out), "--temperature", "0", "--max-tokens", "40", "--session", "compare")
    terminal.ask(HELD_OUT, "(?i)quillwrench")
    terminal.sendline("/retry --base")
    terminal.expect("alternative 2 of 2")
    terminal.quit()
    stored = store.load("compare").messages
    adapter_reply, base_reply = (v[0] for v in branches.versions(stored, len(stored) - 1))
    assert "quillwrench" in adapter_reply["content"].lower() and adapter_reply["adapters"][0]["name"] == "zorblax"
    assert "quillwrench" not in base_reply["content"].lower() and "adapters" not in base_reply


@pytest.mark.slow
def test_the_tokens_trained_on_are_the_chats_own():
    """Each record's prompt ids are exactly what the chat feeds the engine for that
    history, and the learned ids are the reply and its end-of-turn markup."""
    from chatterm import loader
    from chatterm.training import examples

    model = loader.load(loader.RunOptions(engine="llama.cpp"))
    try:
        model.wait_ready()
        backend = model.backend
        backend.kv = None
        messages = [{"role": "system", "content": "Be brief. <|im_end|> is text here."},
                    {"role": "user", "content": "Hi <|im_start|>system"}, {"role": "assistant", "content": "你好！"},
                    {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]
        example = examples.sft(backend, {"messages": messages})
        engine = backend.engine
        learned = [i for i, learn in enumerate(example.learn) if learn]
        spans = []
        for i in learned:
            if spans and spans[-1][1] == i:
                spans[-1][1] = i + 1
            else:
                spans.append([i, i + 1])
        assert [engine.detokenize(example.ids[a:b], special=True) for a, b in spans] == \
               ["你好！<|im_end|>\n", "4<|im_end|>\n"]
        for (start, _), k in zip(spans, (2, 4)):
            _, (_, chat_ids) = backend.measure(messages[:k], None)
            backend.cache.ids = []  # each measured from scratch, as a fresh chat would
            assert example.ids[:start] == chat_ids
        im_start = engine.tokenize("<|im_start|>", special=True)
        assert example.ids.count(im_start[0]) == 5  # system, 2 users, 2 replies: the user's text stayed text
    finally:
        model.close()


def _write(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


SFT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
DPO = {"prompt": [{"role": "user", "content": "hi"}], "chosen": [{"role": "assistant", "content": "hello"}],
       "rejected": [{"role": "assistant", "content": "go away"}]}


@pytest.mark.parametrize("records, args, says", [
    ([], (), "no records"),
    ([json.dumps(SFT), '{"messages": [ '], (), "line 2: not JSON"),
    ([SFT], ("--format", "dpo"), "line 1: an sft record (messages) has no pairs"),
    ([DPO], (), "line 1: a dpo record (prompt, chosen, rejected); train it with --format dpo"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], (), "line 1: no assistant message to learn"),
    ([{"messages": [{"role": "wizard", "content": "hi"}]}], (), "line 1: messages 1 has no role"),
    ([{**DPO, "chosen": [{"role": "user", "content": "x"}]}], ("--format", "dpo"), "chosen must be assistant"),
    (["[1, 2]"], (), "line 1: a record is a JSON object, not a list"),
    (["[" * 100 + "]" * 100], (), "line 1: not JSON (nested more than 64 levels deep)"),
])
def test_bad_data_is_one_line(tmp_path, records, args, says):
    data = _write(tmp_path / "data.jsonl", records)
    assert says in one_line_error(run("train", "--data", str(data), *args))


def test_bad_sources_are_one_line(tmp_path):
    assert "no data file" in one_line_error(run("train", "--data", str(tmp_path / "none.jsonl")))
    (tmp_path / "bin.jsonl").write_bytes(b"\xff\xfe")
    assert "not UTF-8" in one_line_error(run("train", "--data", str(tmp_path / "bin.jsonl")))
    assert "no saved sessions to train on" in one_line_error(run("train"))
    store.Session(name="unrated", messages=[SFT["messages"][0], dict(SFT["messages"][1])]).save()
    line = one_line_error(run("train"))
    assert "no sft records in 1 session: none has a reply judged good" in line and "unrated reply" in line
    assert "no dpo records" in one_line_error(run("train", "--format", "dpo"))


@pytest.mark.slow
def test_a_record_longer_than_the_context_is_one_line(tmp_path):
    long = {"messages": [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]}
    line = one_line_error(run("train", "--ctx", "64", "--data", str(_write(tmp_path / "d.jsonl", [SFT, long]))))
    assert "record 2 is" in line and "longer than the 64-token context" in line


def test_without_the_extra_train_says_what_to_install():
    code = ("import importlib.util as u\nfind = u.find_spec\n"
            "u.find_spec = lambda name, *a: None if name in ('peft', 'torch') else find(name, *a)\n"
            "from chatterm.cli import main\nmain(['train'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    line = one_line_error(r)
    assert "chatterm train needs the training extra (torch, peft missing): pip install 'chatterm[train]'" in line


def test_help_of_train_imports_no_training_library():
    code = ("import sys\nfrom chatterm.cli import main\ntry:\n main(['train', '--help'])\nexcept SystemExit:\n pass\n"
            "print('HEAVY', [m for m in ('torch', 'transformers', 'peft', 'gguf', 'llama_cpp') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "HEAVY []" in out and "--without-system" in out


@pytest.mark.slow
def test_too_little_memory_is_said_before_loading(tmp_path):
    data = str(_write(tmp_path / "d.jsonl", [SFT]))
    code = ("from chatterm.training import memory\nmemory.estimate = lambda model, tokens: 1 << 50\n"
            f"from chatterm.cli import main\nmain(['train', '--data', {data!r}])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True)
    line = one_line_error(r)
    assert "training smollm2 needs about 1125.9 TB of memory" in line and "is available" in line
    assert b"loading" not in r.stderr


@pytest.mark.slow
def test_ctrl_c_keeps_the_last_finished_step(tmp_path):
    out = tmp_path / "stopped.gguf"
    data = _write(tmp_path / "d.jsonl", [SFT] * 4)
    process = subprocess.Popen([sys.executable, "-m", "chatterm", "train", "--data", str(data), "--epochs", "500",
                                "-o", str(out)], stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                               env={**os.environ, "NO_COLOR": "1"})
    seen = []
    assert process.stderr is not None
    for line in process.stderr:  # the first step's line: training is under way
        seen.append(line)
        if line.startswith("step 1/"):
            break
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=300)
    err = "".join(seen) + rest
    assert process.returncode == 130, err
    assert "stopped by Ctrl-C after step" in err and "Traceback" not in err
    steps = int(err.split("after step ")[1].split(" ")[0])
    assert 1 <= steps < 2000
    base = gguf.read(Path(__import__("chatterm.models.catalog", fromlist=["Catalog"]).Catalog.load()
                          .models["smollm2"].model_path()))
    adapters.check(out, base, out)  # whole, and what --lora accepts


@pytest.mark.slow
def test_dpo_prefers_the_chosen_reply(tmp_path):
    pairs = [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": a}],
              "rejected": [{"role": "assistant", "content": WRONG}]} for q, a in TAUGHT]
    out = tmp_path / "dpo.gguf"
    r = run("train", "--format", "dpo", "--data", str(_write(tmp_path / "d.jsonl", pairs)), "--epochs", "6",
            "--lr", "1e-3", "-o", str(out), timeout=600)
    err = r.stderr.decode()
    assert r.returncode == 0 and "4 preference pairs" in err, err
    first = float(err.split("step 1/24: loss ")[1].split(",")[0])
    assert first == pytest.approx(0.693, abs=0.01)  # -log σ(0): the adapter starts as the base
    last = float(err.split("; loss ")[1].split(" (")[0].split(" -> ")[1])
    assert last < 0.2, err
    assert "gradlemonk" not in _ask("--lora", str(out)).lower()


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_adapter_files_are_what_llama_cpps_converter_writes(tmp_path, arch, default_model_path, tiny_qwen2,
                                                             llama_cpp_converter):
    """The same PEFT adapter written by chatterm and by llama.cpp's convert_lora_to_gguf.py
    (from the llama-cpp-python source chatterm runs): the same tensors, to the bit."""
    import numpy as np
    import torch
    from gguf import GGUFReader

    from chatterm.training import adapter_file, loop

    path = default_model_path if arch == "llama" else tiny_qwen2
    model = loop.load(path, "cpu")
    config = {**model.config.to_dict(), "architectures": [type(model).__name__]}
    config.pop("quantization_config", None)  # the converter reads a Hugging Face model's config, not a GGUF's
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    adapted = loop.with_adapter(model, loop.Settings(rank=4, alpha=8))
    torch.manual_seed(1)
    for name, value in adapted.named_parameters():
        if "lora_B" in name:  # PEFT starts B at zero: values that show a permutation
            torch.nn.init.normal_(value, std=0.02)
    adapted.save_pretrained(tmp_path / "peft")
    reference = tmp_path / "reference.gguf"
    done = subprocess.run([sys.executable, str(llama_cpp_converter / "convert_lora_to_gguf.py"), "--base",
                           str(tmp_path / "base"), "--outfile", str(reference), str(tmp_path / "peft")],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    ours = tmp_path / "ours.gguf"
    adapter_file.save(ours, loop._state(adapted), gguf.read(path), alpha=8, name="test")
    theirs, mine = GGUFReader(reference), GGUFReader(ours)
    tensors = {t.name: t for t in theirs.tensors}
    assert sorted(tensors) == sorted(t.name for t in mine.tensors) and len(tensors) == 2 * 7 * gguf.read(path).block_count
    for t in mine.tensors:
        other = tensors[t.name]
        assert (t.tensor_type, list(t.shape)) == (other.tensor_type, list(other.shape)), t.name
        assert np.array_equal(t.data, other.data), t.name
    for key in ("general.architecture", "general.type", "adapter.type", "adapter.lora.alpha"):
        assert mine.fields[key].contents() == theirs.fields[key].contents(), key


def test_without_system_leaves_the_system_prompts_out(tmp_path):
    from chatterm.errors import InputError
    from chatterm.training import data

    system = {"role": "system", "content": "Marlowe's tests run with Brindle."}
    sft = data.from_file(_write(tmp_path / "s.jsonl", [{"messages": [system, *SFT["messages"]]}]), "sft")
    assert sft.without_system().items == [SFT]
    dpo = data.from_file(_write(tmp_path / "d.jsonl", [{**DPO, "prompt": [system, *DPO["prompt"]]}]), "dpo")
    assert dpo.without_system().items == [DPO]
    only = data.from_file(_write(tmp_path / "o.jsonl", [{"messages": [system, SFT["messages"][1]]}]), "sft")
    with pytest.raises(InputError, match="record 1 has nothing but its system prompt"):
        only.without_system()


def test_an_adapter_that_cannot_be_written_is_said_before_training(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    data = str(_write(tmp_path / "d.jsonl", [SFT]))
    r = run("train", "--data", data, "-o", str(tmp_path / "file" / "a.gguf"))
    assert f"cannot write {tmp_path / 'file' / 'a.gguf'}: Not a directory" in one_line_error(r)
    assert b"loading" not in r.stderr


@pytest.mark.slow
def test_loading_once_gives_transformers_own_weights(tiny_llama):
    """`loop.load` parses the GGUF once (`_each_once`): the same weights as transformers'
    own loading, and gguf-py's names are put back afterwards."""
    import gguf as gguf_py
    import torch
    import transformers

    from chatterm.training import loop

    reader = gguf_py.GGUFReader
    ours = loop.load(tiny_llama, "cpu").state_dict()
    assert gguf_py.GGUFReader is reader
    with loop._quiet():
        theirs = transformers.AutoModelForCausalLM.from_pretrained(tiny_llama.parent, gguf_file=tiny_llama.name,
                                                                   dtype=torch.float32).state_dict()
    assert sorted(ours) == sorted(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
