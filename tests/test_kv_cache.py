"""The KV cache saved with a session: a resumed chat loads it and reads only the new
tokens, and answers as a full re-read does; any file that is not the one saved for
this model, these settings and this very history is ignored, never an error and never
a wrong answer; the folder stays within its bound."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from chatterm.loader import RunOptions
from chatterm.sessions import Session, kv_cache
from tests.helpers import converse

QUESTION = "What did the fox do? Answer in one sentence."


def history(n: int = 6) -> list[dict]:
    messages = [{"role": "system", "content": "Be brief."}]
    for i in range(n):
        messages += [{"role": "user", "content": f"Note {i}: " + "the quick brown fox jumps over the lazy dog. " * 8},
                     {"role": "assistant", "content": f"Noted {i}. " + "I will remember the fox and the dog. " * 4}]
    return messages


def ask(messages: list[dict], *, kv: bool = True, save: bool = False, ctx: int | None = None,
        reproducible: bool = False, then: str | None = None) -> dict:
    """QUESTION on `messages` in a new chat (the default model, greedy, its worker): the
    reply, what came from the saved cache, what the engine reused; `save`: the cache
    saved after it; `then`: one more question in the same chat (its answer "next")."""
    chat = converse(RunOptions(engine="llama.cpp", ctx=ctx, reproducible=reproducible))
    try:
        chat.open(Session(name="kvs", messages=[dict(m) for m in messages]))
        chat.overrides = {"temperature": 0, "seed": 0, "max_tokens": 48}  # the session's settings: greedy
        assert chat.ready()
        if not kv:
            chat.backend.kv = None
        text = "".join(e for e in chat.send(QUESTION) if isinstance(e, str))
        found = {"text": text, "restored": chat.backend.restored, "reused": chat.engine.reused,
                 "prompt": chat.last.prompt_tokens, "saved": chat.backend.save_kv("kvs") if save else 0}
        if then is not None:
            found["next"] = "".join(e for e in chat.send(then) if isinstance(e, str))
        return found
    finally:
        chat.model.close()


def saved(reproducible: bool = False) -> tuple[list[dict], str]:
    """A chat that answered, saved its cache, and went on in memory: the history to
    resume it with, and the answer it gave next without closing."""
    messages = history()
    first = ask(messages, save=True, reproducible=reproducible, then=QUESTION)
    assert first["saved"] >= kv_cache.MIN_TOKENS
    return [*messages, {"role": "user", "content": QUESTION}, {"role": "assistant", "content": first["text"]}], \
        first["next"]


@pytest.fixture
def saved_chat(private_dirs):
    return saved()[0]


def states() -> list[Path]:
    return sorted(kv_cache.folder().glob("*/*.state"))


def test_a_resumed_chat_answers_as_the_chat_that_never_closed(private_dirs):
    messages, continued = saved()
    resumed = ask(messages)
    assert resumed["restored"] >= kv_cache.MIN_TOKENS and resumed["reused"] >= resumed["restored"]
    assert resumed["text"] == continued  # the very cache the open chat had: the same next reply


def test_in_reproducible_mode_a_resumed_chat_answers_as_a_full_reread(private_dirs):
    messages, continued = saved(reproducible=True)
    resumed = ask(messages, reproducible=True)
    reread = ask(messages, reproducible=True, kv=False)
    assert resumed["restored"] >= kv_cache.MIN_TOKENS and reread["restored"] == reread["reused"] == 0
    assert resumed["text"] == reread["text"] == continued


def test_a_history_edited_elsewhere_is_read_again(saved_chat):
    edited = [dict(m) for m in saved_chat]
    edited[3]["content"] = "Noted, but differently."  # a reply changed in another window
    resumed, reread = ask(edited), ask(edited, kv=False)
    assert resumed["restored"] == 0 and resumed["text"] == reread["text"]


def test_another_context_size_or_model_does_not_take_it(saved_chat):
    other_ctx = ask(saved_chat, ctx=1024)
    assert other_ctx["restored"] == 0


@pytest.mark.parametrize("damage", ["truncated", "random", "random with its digest", "no description",
                                    "foreign ids"])
def test_a_damaged_or_foreign_cache_file_is_ignored_and_the_answer_right(saved_chat, damage):
    (state,) = states()
    description = state.with_suffix(".json")
    entry = json.loads(description.read_text())
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    elif damage.startswith("random"):
        state.write_bytes(os.urandom(state.stat().st_size))
        if damage == "random with its digest":
            from chatterm.engines.llamacpp import file_digest

            description.write_text(json.dumps({**entry, "digest": file_digest(str(state))}))
    elif damage == "no description":  # a kill between the state and its description
        description.unlink()
    else:  # the description claims other tokens than the state holds
        description.write_text(json.dumps({**entry, "ids": [7] + entry["ids"][1:]}))
    resumed, reread = ask(saved_chat), ask(saved_chat, kv=False)
    assert resumed["restored"] == 0
    assert resumed["text"] == reread["text"]


def test_a_description_claiming_another_conversations_text_is_not_used(saved_chat):
    """The ids (the state's own) spell another text than the description claims: a
    chat on that other text never answers from this cache."""
    (state,) = states()
    description = state.with_suffix(".json")
    entry = json.loads(description.read_text())
    other = [{**m, "content": m["content"].replace("fox", "cat")} for m in saved_chat]
    description.write_text(json.dumps({**entry, "text": entry["text"].replace("fox", "cat")}, ensure_ascii=False))
    resumed, reread = ask(other), ask(other, kv=False)
    assert resumed["restored"] == 0 and resumed["text"] == reread["text"]


def test_the_folder_keeps_to_its_bound_least_recently_used_first(private_dirs, monkeypatch):
    root = kv_cache.folder() / "key"
    root.mkdir(parents=True)
    for i in range(5):
        (root / f"s{i}.state").write_bytes(b"x" * 1000)
        (root / f"s{i}.json").write_text(json.dumps({"ids": [], "session": f"s{i}", "text": ""}))
        os.utime(root / f"s{i}.json", (1000 + i, 1000 + i))
    assert kv_cache.evict(2600) == 3
    assert sorted(p.stem for p in root.glob("*.state")) == ["s3", "s4"]
    assert kv_cache.forget_session("s4") == 1
    assert [p.stem for p in root.glob("*.state")] == ["s3"]


def test_leftovers_of_a_killed_write_are_never_used(saved_chat):
    (state,) = states()
    shutil.copy(state, f"{state}.12345.tmp")  # a state being written when chatterm was killed
    state.with_suffix(".json").rename(state.with_suffix(".json.999.tmp"))
    store = kv_cache.KvStore(state.parent.name)
    assert store.find("anything") is None and store._entries() == []


def test_prune_cache_removes_the_caches_of_deleted_sessions(private_dirs):
    from chatterm.sessions import sessions_dir
    from tests.helpers import run

    root = kv_cache.folder() / "key"
    root.mkdir(parents=True)
    for name in ("kept", "deleted"):
        (root / f"{name}.state").write_bytes(b"x" * 100)
        (root / f"{name}.json").write_text(json.dumps({"ids": [], "session": name, "text": ""}))
    sessions_dir().mkdir(parents=True, exist_ok=True)
    (sessions_dir() / "kept.json").write_text("{}")
    r = run("sessions", "--prune-cache")
    assert r.returncode == 0 and "removed 1 saved caches; 1 left" in r.stdout.decode()
    assert sorted(p.stem for p in root.glob("*.state")) == ["kept"]


@pytest.mark.parametrize("value", ["inf", "1e400", "nan", "-1", "lots", "1_0"])
def test_a_bound_that_is_no_number_is_one_line(private_dirs, value):
    from tests.helpers import one_line_error, run

    line = one_line_error(run("sessions", "--prune-cache", env={"CHATTERM_KV_CACHE_GB": value}))
    assert f"CHATTERM_KV_CACHE_GB='{value}' is not a number of GiB" in line
    assert kv_cache.limit_problem() is None  # this process has no such value
    os.environ["CHATTERM_KV_CACHE_GB"] = value
    try:
        assert "keep to 4 GiB" in kv_cache.limit_problem()
    finally:
        del os.environ["CHATTERM_KV_CACHE_GB"]


def test_fifos_links_and_orphans_in_the_cache_folder_hang_nothing(private_dirs):
    """A FIFO as a description or a state, a description linked to /dev/zero: never
    opened for reading; a state whose description was never written (a full disk) is
    counted, and removed once it is an hour old."""
    root = kv_cache.folder() / "key"
    root.mkdir(parents=True)
    os.mkfifo(root / "fifo.json")
    (root / "fifo.state").write_bytes(b"x")
    os.symlink("/dev/zero", root / "zero.json")
    (root / "zero.state").write_bytes(b"x")
    (root / "ok.json").write_text(json.dumps({"ids": [1] * 80, "session": "s", "text": "hello"}))
    os.mkfifo(root / "ok.state")
    (root / "orphan.state").write_bytes(b"y" * 1000)
    store = kv_cache.KvStore("key")
    assert store.find("hello there") is None and store._entries() == []
    assert ("", 1000) in {(session, size) for _, size, base, session in kv_cache.pairs() if base.endswith("orphan")}
    assert kv_cache.evict(1 << 30) == 0  # young: perhaps a write under way
    os.utime(root / "orphan.state", (1000, 1000))
    assert kv_cache.evict(1 << 30) == 1 and not (root / "orphan.state").exists()
    from tests.helpers import run

    r = run("sessions", "--prune-cache", timeout=60)
    assert r.returncode == 0 and "removed" in r.stdout.decode(), r.stderr


def test_a_description_that_cannot_be_written_leaves_no_state(private_dirs, monkeypatch):
    store = kv_cache.KvStore("key")
    state = store.new_state_path()
    Path(state).write_bytes(b"s" * 100)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(kv_cache.json, "dump", full)
    with pytest.raises(OSError):
        store.record(state, "text", [1, 2], "d", "s")
    assert list(store.dir.iterdir()) == []


def test_stats_says_what_the_saved_cache_gave(spawn, private_dirs):
    messages = history()
    first = ask(messages, save=True)
    Session(name="kvs", messages=[*messages, {"role": "user", "content": QUESTION},
                                  {"role": "assistant", "content": first["text"]}]).save()
    child = spawn("--session", "kvs", "--engine", "llama.cpp", "--temperature", "0", "--max-tokens", "8")
    child.ask("And the dog?", "›")
    child.sendline("/stats")
    child.expect(r"cache\s+(\d[\d,]*) prompt tokens reused \(the session's saved cache gave (\d[\d,]*) when it opened\)")
    assert int(child.match.group(2).replace(",", "")) >= kv_cache.MIN_TOKENS
    child.quit()


def test_a_one_shot_on_the_same_files_reads_only_its_question(private_dirs, tmp_path, capsys):
    from chatterm.attachments import gather, message
    from chatterm.ui.oneshot import one_shot

    source = tmp_path / "notes.txt"
    source.write_text("".join(f"Line {i}: the meeting about project {i} is in room {i % 9}.\n" for i in range(40)))
    files = gather([str(source)]).files
    # Reproducible mode: a prefix evaluated in another batch than a full read's has the very same numbers.
    options = RunOptions(engine="llama.cpp", reproducible=True, sampling={"temperature": 0, "seed": 0, "max_tokens": 8})
    answers = []
    for question in ("Where is project 3?", "Where is project 7?", "Where is project 7?"):
        _, conversation = one_shot(message(files, question), options, question=question)
        answers.append((conversation.backend.restored, conversation.last.text))
    assert answers[0][0] == 0  # the first reads everything, and saves what comes before its question
    assert answers[1][0] >= kv_cache.MIN_TOKENS and answers[2][0] >= kv_cache.MIN_TOKENS
    assert len(states()) == 1  # one state for one system prompt and set of files
    reread = converse(options)
    try:
        reread.backend.kv = None
        assert reread.ready()
        for _ in reread.send(message(files, "Where is project 7?")):
            pass
        assert answers[2][1] == reread.last.text  # from the saved prefix: the answer a full read gives
    finally:
        reread.model.close()
