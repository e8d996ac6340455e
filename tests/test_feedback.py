"""Ratings, alternatives and branches: in the conversation, in the REPL, in session
files (old ones included), and what `chatterm sessions` and `chatterm export` make of them."""

from __future__ import annotations

import json
import os
import signal

import pexpect
import pytest

from chatterm import branches, sessions
from chatterm.errors import ChattermError
from chatterm.sessions import archive, datasets
from tests.helpers import drive

ALT_LEFT, ALT_RIGHT = "\x1b[1;3D", "\x1b[1;3C"  # what xterm sends for Alt-← / Alt-→


def reply(chunks) -> str:
    return "".join(chunks)



def saved(name: str = "test") -> list[dict]:
    return json.loads((sessions.sessions_dir() / f"{name}.json").read_text())["messages"]


def contents(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages]


def write_session(name: str, messages: list[dict], **extra) -> None:
    sessions.Session(name=name, messages=messages, model="m", engine="e", **extra).save()


# ---------------------------------------------------------------- the conversation

def test_retries_are_kept_and_any_of_them_continues_the_conversation(fake_conversation):
    conversation = fake_conversation("one", "two", "three", "after", system=None)
    reply(conversation.send("q"))
    reply(conversation.retry())
    reply(conversation.retry())
    i = conversation.fork()
    assert i == 1 and [v[0]["content"] for v in branches.versions(conversation.messages, i)] == ["one", "two", "three"]
    conversation.choose(i, 1)
    assert contents(conversation.messages) == ["q", "one"]
    reply(conversation.send("next"))
    assert contents(conversation.messages) == ["q", "one", "next", "after"]
    # The next prompt was built from the chosen reply.
    assert "one<|im_end|>" in bytes(conversation.engine.prompts[-1]).decode()
    conversation.choose(i, 3)  # away and back: "next" stays with the reply it followed
    assert contents(conversation.messages) == ["q", "three"]
    conversation.choose(i, 1)
    assert contents(conversation.messages) == ["q", "one", "next", "after"]
    with pytest.raises(ChattermError, match="no alternative 4: there are 3"):
        conversation.choose(i, 4)


def test_each_retry_gets_its_own_seed_when_the_seed_is_fixed(fake_conversation):
    conversation = fake_conversation("a", "b", "c", "d", system=None)
    conversation.set_sampling("seed", 2**31 - 2)
    reply(conversation.send("q"))
    reply(conversation.retry())
    reply(conversation.retry())
    reply(conversation.send("q2"))
    assert conversation.engine.seeds == [2**31 - 2, 2**31 - 1, 0, 2**31 - 2]


def test_editing_a_question_starts_a_branch_and_the_old_one_stays(fake_conversation):
    conversation = fake_conversation("a1", "a2", "b1", system="SYS")
    reply(conversation.send("q1"))
    reply(conversation.send("q2"))
    assert reply(conversation.edit(1, "q1 again")) == "b1"
    assert contents(conversation.messages) == ["SYS", "q1 again", "b1"]
    prompt = bytes(conversation.engine.prompts[-1]).decode()
    assert "q1 again" in prompt and "a1" not in prompt and "q2" not in prompt
    i = conversation.fork()
    assert i == 1
    conversation.choose(i, 1)
    assert contents(conversation.messages) == ["SYS", "q1", "a1", "q2", "a2"]
    with pytest.raises(ChattermError, match="no question 5: this conversation has 2"):
        reply(conversation.edit(5, "x"))


def test_an_edit_that_does_not_fit_changes_nothing(fake_conversation):
    conversation = fake_conversation("a1", n_ctx=200, system=None)
    reply(conversation.send("q1"))
    before = [dict(m) for m in conversation.messages]
    with pytest.raises(ChattermError, match="context window holds 200"):
        reply(conversation.edit(1, "long " * 300))
    assert conversation.messages == before


def test_ratings_are_set_replaced_and_removed(fake_conversation):
    conversation = fake_conversation("a1", "a2", system=None)
    with pytest.raises(ChattermError, match="no reply to rate"):
        conversation.rate(None, "good")
    reply(conversation.send("q1"))
    reply(conversation.send("q2"))
    assert conversation.rate(None, "good", "clear") == 2
    assert conversation.rate(1, "bad") == 1
    assert conversation.messages[3] == {"role": "assistant", "content": "a2", "finish": "eog",
                                        "rating": "good", "note": "clear"}
    conversation.rate(2, "bad", "on second thought")
    assert (conversation.messages[3]["rating"], conversation.messages[3]["note"]) == ("bad", "on second thought")
    conversation.rate(2, None)
    assert "rating" not in conversation.messages[3] and "note" not in conversation.messages[3]
    with pytest.raises(ChattermError, match="no reply 3: this conversation has 2"):
        conversation.rate(3, "good")


# ---------------------------------------------------------------- the REPL

def test_repl_rates_retries_switches_and_shows_it_all_again(fake_model):
    keys = ("Where is Paris?\r/bad too vague\r/retry\r/good 1 clear and right\r/retry\r"
            "/alt\r/alt 2\r" + ALT_LEFT + "/sessions\r")
    repl, out = drive(keys, fake_model("It is somewhere.", "Paris is in France.", "France.", "spare"))
    assert "reply 1: ✗ bad: too vague" in out and "reply 1: ✓ good: clear and right" in out
    assert "(alternative 3 of 3: /alt N switches" in out
    assert "reply 1 has 3 versions:" in out and "› 3  France." in out and "  1  It is somewhere.  ✗ bad: too vague" in out
    assert "reply 1: version 2 of 3" in out and "reply 1: version 1 of 3" in out  # /alt 2, then Alt-←
    messages = saved()
    assert messages[-1]["content"] == "It is somewhere." and messages[-1]["version"] == 1
    assert [v[0].get("rating") for v in branches.versions(messages, 2)] == ["bad", "good", None]
    listed = next(line for line in out.splitlines() if line.startswith("test "))  # /sessions
    assert "Where is Paris?" in listed and "✓1 ✗1" in listed

    # Loading it again shows the chosen reply with its rating and versions.
    repl, _ = drive("", fake_model(), session=sessions.load("test"))
    repl.replay()
    out = repl.console.file.getvalue()
    assert "It is somewhere." in out and "✗ bad: too vague  ·  version 1 of 3 (/alt)" in out


def test_repl_edit_in_the_input_and_inline(fake_model):
    # /edit 1 puts question 1 in the input: the keys edit it (Ctrl-U clears, then new text).
    repl, out = drive("first\rsecond\r/edit 1\r\x15first, edited\r/edit 1 third try\r/alt\r",
                      fake_model("r1", "r2", "r3", "r4"))
    assert "editing question 1" in out
    assert contents(repl.conversation.messages) == ["SYS", "third try", "r4"]
    assert "question 1 has 3 versions:" in out
    repl.conversation.choose(1, 1)
    assert contents(repl.conversation.messages) == ["SYS", "first", "r1", "second", "r2"]


def test_an_edit_cancelled_with_ctrl_c_sends_nothing(fake_model):
    repl, out = drive("first\r/edit last\r\x03new question\r", fake_model("r1", "r2"))
    assert contents(repl.conversation.messages) == ["SYS", "first", "r1", "new question", "r2"]
    assert not any(m.get("alternatives") for m in repl.conversation.messages)


def test_markdown_transcript_shows_ratings_and_versions(tmp_path, fake_model):
    md = tmp_path / "t.md"
    drive(f"q\r/retry\r/good nice\r/save {md}\r", fake_model("one", "two"))
    assert "two\n\n*(✓ good: nice; version 2 of 2)*" in md.read_text()


# ---------------------------------------------------------------- files

def test_ratings_survive_kill_9_and_load_again(spawn, chatterm):
    child = spawn("--temperature", "0", "--session", "voted")
    child.ask("What is the capital of France?", "Paris")
    child.sendline("/good correct, 正确")
    child.expect("reply 1: ✓ good")
    child.expect("›")
    os.kill(child.pid, signal.SIGKILL)
    child.expect(pexpect.EOF)
    messages = saved("voted")
    assert messages[-1]["rating"] == "good" and messages[-1]["note"] == "correct, 正确"
    again = spawn("--session", "voted")
    again.expect("✓ good: correct, 正确")
    again.quit()
    r = chatterm("export", "--format", "kto", "voted")
    assert r.returncode == 0 and "kto: 1 rated replies (1 good, 0 bad)" in r.stderr.decode(), r.stderr
    record = json.loads(r.stdout)
    assert record["label"] is True and "Paris" in record["completion"][0]["content"]


def test_old_session_files_load_and_export(chatterm, fake_model):
    folder = sessions.sessions_dir()
    folder.mkdir(parents=True)
    old = {"format": 1, "name": "old", "created": "2025-01-02T03:04:05", "model": "smollm2", "engine": "llama.cpp",
           "sampling": {}, "messages": [{"role": "user", "content": "hi"},
                                        {"role": "assistant", "content": "hello", "finish": "eog"}]}
    (folder / "old.json").write_text(json.dumps(old))
    repl, out = drive("/good\r", fake_model(), session=sessions.load("old"))
    repl.replay()
    assert "reply 1: ✓ good" in out and "hello\n✓ good" in repl.console.file.getvalue()
    assert saved("old")[-1]["rating"] == "good"
    r = chatterm("export")
    assert json.loads(r.stdout) == {"messages": [{"role": "user", "content": "hi"},
                                                 {"role": "assistant", "content": "hello"}]}


@pytest.mark.parametrize("text, problem", [
    ("{not json", "unreadable or corrupt"),
    ('{"messages": [{"role": "robot", "content": "x"}]}', "without a valid role"),
    ('{"messages": [{"role": "assistant", "content": "x", "rating": "meh"}]}', "invalid rating"),
    ('{"messages": [{"role": "assistant", "content": "x", "alternatives": [[{"role": "user", "content": "y"}]]}]}',
     "another kind of message"),
    ('{"messages": [{"role": "assistant", "content": "x", "version": 5, "alternatives": [[{"role": '
     '"assistant", "content": "y"}]]}]}', "invalid version"),
    ("[" * 100000 + "]" * 100000, "corrupt"),
    ('{"messages": [{"role": "assistant", "content": "x", "tool_calls": [{"function": {"name": "run", '
     '"arguments": "' + "[" * 500 + "]" * 500 + '"}}]}]}', "nested more than 64 levels deep"),
])
def test_malformed_files_are_skipped_with_a_line(chatterm, text, problem):
    write_session("fine", [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "rating": "good"}])
    (sessions.sessions_dir() / "broken.json").write_text(text)
    for args in (["sessions"], ["export", "--format", "kto"]):
        r = chatterm(*args)
        assert r.returncode == 0 and "Traceback" not in r.stderr.decode(), r.stderr
        line = next(line for line in r.stderr.decode().splitlines() if line.startswith("skipped broken.json"))
        assert problem in line
    assert json.loads(chatterm("export", "--format", "kto").stdout)["label"] is True
    r = chatterm("sessions", "--search", "Q")
    assert r.stdout.decode().startswith("fine ") and "Traceback" not in r.stderr.decode()
    if problem in ("invalid rating", "invalid version"):  # optional fields: opened without them, said
        opened = sessions.load("broken")
        assert "left out what was invalid: an " + problem in opened.repaired
        assert all("rating" not in m and "version" not in m for m in opened.messages)
        return
    with pytest.raises(sessions.SessionError, match=problem):
        sessions.load("broken")


# ---------------------------------------------------------------- export

def retried_session(fake_conversation):
    """Q1 answered three times (bad, good, unrated: current), then a second turn on
    the good one, and question 1 asked another way once, with its own rated reply."""
    conversation = fake_conversation("bad answer", "good answer", "plain answer", "a2", "other reply",
                                     system="Be brief.")
    reply(conversation.send("Q1"))
    conversation.rate(None, "bad", "wrong")
    reply(conversation.retry())
    conversation.rate(None, "good")
    reply(conversation.retry())
    conversation.choose(2, 2)
    reply(conversation.send("Q2"))
    conversation.rate(None, "good")
    reply(conversation.edit(1, "Q1, reworded"))
    conversation.rate(None, "bad")
    return conversation


def export(messages, fmt, **kw):
    tally = datasets.Tally()
    return list(datasets.records(messages, datasets.Options(fmt, **kw), tally)), tally


def test_dpo_pairs_come_from_alternatives_rated_both_ways(fake_conversation):
    messages = retried_session(fake_conversation).messages
    records, tally = export(messages, "dpo")
    assert records == [{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Q1"}],
                        "chosen": [{"role": "assistant", "content": "good answer"}],
                        "rejected": [{"role": "assistant", "content": "bad answer"}], "source": "ratings"}]
    # The good second reply and the reworded question's bad reply have nothing to pair with.
    assert tally.skipped == {"judged reply without alternatives (/retry makes one)": 2}


def test_kto_has_every_rated_reply_with_its_history(fake_conversation):
    records, tally = export(retried_session(fake_conversation).messages, "kto")
    assert sorted((r["completion"][0]["content"], r["label"]) for r in records) == [
        ("a2", True), ("bad answer", False), ("good answer", True), ("other reply", False)]
    a2 = next(r for r in records if r["completion"][0]["content"] == "a2")
    assert [m["content"] for m in a2["prompt"]] == ["Be brief.", "Q1", "good answer", "Q2"]
    assert tally.labels == {"good": 2, "bad": 2}


def test_sft_exports_the_good_replies_or_with_unrated_the_current_path(fake_conversation):
    conversation = retried_session(fake_conversation)
    records, _ = export(conversation.messages, "sft", unrated=True)  # current path: the reworded question, rated bad
    assert records == []
    conversation.choose(1, 1)  # back to Q1 (and its good reply, chosen before)
    records, _ = export(conversation.messages, "sft", unrated=True)
    assert [[m["content"] for m in r["messages"]] for r in records] == [
        ["Be brief.", "Q1", "good answer", "Q2", "a2"]]
    records, tally = export(conversation.messages, "sft")  # the default: what was judged good
    # "good answer" alone is a prefix of the record through "a2": one record.
    assert [[m["content"] for m in r["messages"]] for r in records] == [
        ["Be brief.", "Q1", "good answer", "Q2", "a2"]]


def test_cut_and_empty_replies_are_left_out_unless_asked(fake_conversation):
    conversation = fake_conversation("complete", "cut short", system=None, sampling={"max_tokens": 200})
    reply(conversation.send("q1"))
    conversation.rate(None, "good")
    stream = conversation.send("q2")
    next(stream)
    stream.close()  # stopped by the user: a cut reply
    conversation.rate(None, "good")
    records, tally = export(conversation.messages, "sft", unrated=True)
    assert [len(r["messages"]) for r in records] == [2]
    assert tally.skipped == {"conversation ended before a cut reply": 1}
    records, tally = export(conversation.messages, "sft")
    assert [len(r["messages"]) for r in records] == [2] and tally.skipped == {"good reply skipped: cut reply": 1}
    records, tally = export(conversation.messages, "kto")
    assert len(records) == 1 and tally.skipped == {"rated cut reply": 1}
    records, _ = export(conversation.messages, "kto", include_cut=True)
    assert len(records) == 2
    conversation.messages[-1]["content"] = ""  # a reply that failed before its first word
    records, tally = export(conversation.messages, "kto", include_cut=True)
    assert len(records) == 1 and tally.skipped == {"rated empty reply": 1}
    records, _ = export(conversation.messages, "kto", include_cut=True, include_empty=True)
    assert len(records) == 2
    records, tally = export(conversation.messages, "sft", only_good=True)
    assert [len(r["messages"]) for r in records] == [2] and tally.skipped == {"good reply skipped: empty reply": 1}


def test_export_of_chinese_and_code_is_jsonl_that_round_trips(chatterm, tmp_path):
    code = 'def f(x):\n    return "\\n".join(x)  # 注释\n'
    messages = [{"role": "system", "content": "用中文回答。"},
                {"role": "user", "content": "写一个函数\t把列表连接起来"},
                {"role": "assistant", "content": f"好的：\n\n```python\n{code}```\n", "rating": "good"},
                {"role": "user", "content": "Quotes \" and backslashes \\ and U+2028\u2028too"},
                {"role": "assistant", "content": "Done \u2028 ✓ \x1b[31m (an escape the model wrote)"}]
    write_session("zh", messages)
    out = tmp_path / "sft" / "train.jsonl"
    r = chatterm("export", "--format", "sft", "--unrated", "-o", str(out))
    assert r.returncode == 0 and "sft (unrated too): 1 conversations from 1 of 1 sessions" in r.stderr.decode()
    raw = out.read_bytes()
    # Text unescaped; only controls (ESC) and the line separators U+2028/9 escaped.
    assert "用中文回答" in raw.decode("utf-8") and b"\\u" not in raw.replace(b"\\u001b", b"").replace(b"\\u2028", b"")
    lines = raw.decode("utf-8").split("\n")
    assert lines[-1] == "" and len(lines) == 2  # one record, one line
    assert json.loads(lines[0]) == {"messages": [{"role": m["role"], "content": m["content"]} for m in messages]}
    r = chatterm("export", "--only", "good", "zh")
    assert [m["content"] for m in json.loads(r.stdout)["messages"]] == [m["content"] for m in messages[:3]]


def test_export_chooses_sessions_by_name_and_date(chatterm):
    write_session("a", [{"role": "user", "content": "qa"}, {"role": "assistant", "content": "ra"}])
    write_session("b", [{"role": "user", "content": "qb"}, {"role": "assistant", "content": "rb"}])
    os.utime(sessions.sessions_dir() / "a.json", (1700000000, 1700000000))  # 2023-11-14
    def firsts(r):
        return sorted(json.loads(line)["messages"][0]["content"] for line in r.stdout.decode().splitlines())

    assert firsts(chatterm("export")) == []  # nothing judged good: nothing to trust
    assert firsts(chatterm("export", "--unrated")) == ["qa", "qb"]
    assert firsts(chatterm("export", "--unrated", "b")) == ["qb"]
    assert firsts(chatterm("export", "--unrated", "--until", "2023-12-31")) == ["qa"]
    assert firsts(chatterm("export", "--unrated", "--since", "2024-01-01")) == ["qb"]
    r = chatterm("export", "nope")
    assert r.returncode == 1 and "no session 'nope'" in r.stderr.decode()
    r = chatterm("export", "--format", "dpo", "--only", "good")
    assert r.returncode == 1 and "--only good and --unrated are for --format sft" in r.stderr.decode()
    r = chatterm("export", "-o", "/proc/nowhere/x.jsonl")
    assert r.returncode == 1 and r.stderr.decode().startswith("chatterm: error: cannot write")


# ---------------------------------------------------------------- sessions

def test_sessions_lists_and_searches_every_version(chatterm):
    write_session("zh", [{"role": "user", "content": "北京的天气怎么样？"},
                         {"role": "assistant", "content": "北京今天晴。", "rating": "good",
                          "alternatives": [[{"role": "assistant", "content": "不知道。", "rating": "bad"}]]}])
    write_session("en", [{"role": "user", "content": "Tell me about Paris"},
                         {"role": "assistant", "content": "PARIS is the capital of France."}])
    r = chatterm("sessions")
    lines = r.stdout.decode().splitlines()
    assert lines[0].split()[:5] == ["NAME", "UPDATED", "MODEL", "TURNS", "RATED"]
    zh = next(line for line in lines if line.startswith("zh "))
    assert "✓1 ✗1" in zh and "北京的天气怎么样？" in zh
    r = chatterm("sessions", "--search", "paris")
    hits = r.stdout.decode().splitlines()
    assert len(hits) == 2 and all(h.startswith("en ") for h in hits)
    assert "question 1: Tell me about Paris" in hits[0] and "reply 1: PARIS is the capital" in hits[1]
    r = chatterm("sessions", "--search", "不知道")
    assert "reply 1 (alternative): 不知道。" in r.stdout.decode()
    r = chatterm("sessions", "--search", "nowhere to be found")
    assert r.stdout == b"" and "0 messages match" in r.stderr.decode()


def test_search_finds_text_that_json_escapes(tmp_path):
    write_session("s", [{"role": "user", "content": 'say "hi"\nthen\tgo'}])
    hits = [h for h in archive.search('"hi"\nthen', archive.files()) if isinstance(h, archive.Hit)]
    assert [h.where for h in hits] == ["question 1"]


def test_alt_switches_the_last_exchange_unless_told_which(fake_model):
    keys = "q1\r/retry\rq2\r" + ALT_LEFT + "/alt\r/alt reply 1\r/alt reply 1 1\r/alt question 2\r"
    repl, out = drive(keys, fake_model("a", "b", "c"))
    assert "error: the last reply has no alternatives: /retry makes one; earlier: /alt reply 1" in out
    assert out.count("error: the last reply has no alternatives") == 2  # the key, then /alt
    assert "reply 1 has 2 versions:" in out and "reply 1: version 1 of 2" in out
    assert "error: no question 2: this conversation has 1" in out  # q2 followed the other reply
    assert contents(repl.conversation.messages) == ["SYS", "q1", "a"]
    repl.conversation.choose(2, 2)  # the later exchange was kept with the reply it followed
    assert contents(repl.conversation.messages) == ["SYS", "q1", "b", "q2", "c"]


def test_a_reply_cut_and_finished_with_continue_exports_whole(fake_conversation):
    conversation = fake_conversation("the first half", " and the rest.", system=None, sampling={"max_tokens": 200})
    stream = conversation.send("q")
    next(stream)
    stream.close()  # Ctrl-C: a cut reply
    assert conversation.messages[-1]["finish"] == "cancelled"
    reply(conversation.continue_reply())
    conversation.rate(None, "good")
    records, tally = export(conversation.messages, "sft")
    (record,) = records
    assert record["messages"][-1]["content"] == conversation.messages[-1]["content"]
    assert record["messages"][-1]["content"].endswith(" and the rest.") and not tally.skipped


def test_export_by_default_takes_only_what_was_judged_good_and_says_what_it_left(chatterm):
    write_session("mixed", [{"role": "user", "content": "q1"},
                            {"role": "assistant", "content": "I ran the tests and they pass."},  # claimed, never ran
                            {"role": "user", "content": "q2"},
                            {"role": "assistant", "content": "good one", "rating": "good"},
                            {"role": "user", "content": "q3"},
                            {"role": "assistant", "content": "unjudged"}])
    r = chatterm("export")
    records = [json.loads(line) for line in r.stdout.decode().splitlines()]
    # the good reply, from the question after the last reply not judged good: nothing unjudged is trained on
    assert [[m["content"] for m in rec["messages"]] for rec in records] == [["q2", "good one"]]
    assert "left out: 2 × unrated reply (--unrated keeps them)" in r.stderr.decode()
