"""`chatterm pull`, `models`, `show` and `rm` against a local hub (`tests.hubserver`), as
a user runs them: what lands on disk, what is refused, and how each failure reads."""

from __future__ import annotations

import hashlib
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from chatterm.models.hub import store
from tests.helpers import one_line_error
from tests.hubserver import TOKEN, HubFile, Repo

SMOL = "SmolLM2-135M-Instruct.Q4_1.gguf"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parts_of(repo: str) -> list[Path]:
    return sorted((store.root() / repo).glob("*.part"))


@pytest.fixture
def smol_entry(user_models_toml, hub_files):
    """A catalogue entry for the default model as the local hub serves it, pinned."""
    user_models_toml(f'[models.smol-hub]\nhf_repo = "local/smol-GGUF"\nfile = "{SMOL}"\n'
                     f'sha256 = "{sha(hub_files["smol"])}"\nsize = {len(hub_files["smol"])}\n'
                     'languages = ["en"]\nsystem = "You are a helpful assistant. Keep answers short and factual."\n'
                     'sampling = { temperature = 0 }\n')
    return "smol-hub"


def pull_in_background(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "chatterm", "pull", *args], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def wait_for_part(repo: str, at_least: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = parts_of(repo)
        if found and found[0].stat().st_size >= at_least:
            return found[0].stat().st_size
        time.sleep(0.05)
    raise AssertionError(f"no part of {at_least} bytes appeared")


@pytest.mark.slow
def test_pull_a_catalogue_model_then_chat_with_it(hub, smol_entry, chatterm, hub_files):
    r = chatterm("pull", smol_entry)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert "SHA-256 verified" in out and "chatterm -m smol-hub" in out
    assert b"pulling " + SMOL.encode() in r.stderr  # plain progress lines, not a bar, in a pipe
    final = store.path_for("local/smol-GGUF", SMOL)
    assert sha(final.read_bytes()) == sha(hub_files["smol"]) and not parts_of("local/smol-GGUF")
    again = chatterm("pull", smol_entry)
    assert again.returncode == 0 and b"already downloaded" in again.stderr
    listing = chatterm("models").stdout.decode()
    row = next(line for line in listing.splitlines() if line.startswith("smol-hub "))
    assert " yes " in row and "98.4 MB" in row and "yes: " in row and "≈" not in row
    answer = chatterm("-m", smol_entry, "What is the capital of France?")
    assert answer.returncode == 0 and b"Paris" in answer.stdout


def test_a_quantization_picks_the_file_and_several_matches_are_listed(hub, chatterm):
    line = one_line_error(chatterm("pull", "local/tiny-GGUF"))
    assert "matches 2 files" in line and "local/tiny-GGUF:tiny-Q8_0.gguf" in line and "tiny-Q4_K_M.gguf" in line
    assert chatterm("pull", "local/tiny-GGUF:q8_0").returncode == 0
    assert store.path_for("local/tiny-GGUF", "tiny-Q8_0.gguf").is_file()
    assert not store.path_for("local/tiny-GGUF", "tiny-Q4_K_M.gguf").exists()
    shown = chatterm("show", "local/tiny-GGUF:q8_0").stdout.decode()
    assert "architecture:  llama" in shown and "tiny-Q8_0.gguf" in shown and "stop tokens:" in shown
    line = one_line_error(chatterm("pull", "local/tiny-GGUF:q2_k"))
    assert "no file matching 'q2_k'" in line and "tiny-Q8_0.gguf" in line


def test_a_split_model_is_pulled_and_removed_whole(hub, chatterm, hub_files):
    assert chatterm("pull", "local/split-GGUF:q4_k_m").returncode == 0
    first = store.path_for("local/split-GGUF", "big-Q4_K_M-00001-of-00002.gguf")
    second = first.with_name("big-Q4_K_M-00002-of-00002.gguf")
    assert first.read_bytes() + second.read_bytes() == hub_files["tiny"]
    r = chatterm("rm", "local/split-GGUF:q4_k_m")
    assert r.returncode == 0 and b"removed" in r.stdout
    assert not first.exists() and not second.exists() and not (store.root() / "local/split-GGUF").exists()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL])
def test_a_stopped_pull_resumes_where_it_stopped(hub, smol_entry, chatterm, hub_files, stop):
    hub.faults.bytes_per_s = 8e6
    proc = pull_in_background(smol_entry)
    kept = wait_for_part("local/smol-GGUF", 3_000_000)
    proc.send_signal(stop)
    _, err = proc.communicate(timeout=30)
    if stop == signal.SIGINT:  # Ctrl-C: a line saying how to go on, status 130
        assert proc.returncode == 130 and b"run the same pull again to resume" in err and b"Traceback" not in err
    final = store.path_for("local/smol-GGUF", SMOL)
    assert not final.exists(), "never a half-written file under the final name"
    part = parts_of("local/smol-GGUF")[0]
    assert part.stat().st_size >= kept
    hub.faults.bytes_per_s = None
    assert chatterm("pull", smol_entry).returncode == 0
    resumed_from = int(hub.ranges(SMOL)[-1].split("=")[1].rstrip("-"))
    assert resumed_from >= kept
    assert sha(final.read_bytes()) == sha(hub_files["smol"]) and not parts_of("local/smol-GGUF")


def test_dropped_connections_are_resumed_at_once(hub, smol_entry, chatterm, hub_files):
    hub.faults.drop_after, hub.faults.drops = 20_000_000, 2
    r = chatterm("pull", smol_entry)
    assert r.returncode == 0, r.stderr
    ranges = hub.ranges(SMOL)
    assert len(ranges) == 3 and ranges[0] is None and all(r.startswith("bytes=") for r in ranges[1:])
    assert sha(store.path_for("local/smol-GGUF", SMOL).read_bytes()) == sha(hub_files["smol"])


def test_corrupt_bytes_are_detected_and_never_kept(hub, smol_entry, chatterm):
    hub.faults.corrupt = True
    line = one_line_error(chatterm("pull", smol_entry))
    assert f"{SMOL} is corrupt" in line and "deleted" in line
    assert not store.path_for("local/smol-GGUF", SMOL).exists() and not parts_of("local/smol-GGUF")


def test_a_catalogue_digest_that_the_hub_no_longer_has_is_refused(hub, user_models_toml, chatterm):
    user_models_toml(f'[models.pinned]\nhf_repo = "local/smol-GGUF"\nfile = "{SMOL}"\nsha256 = "{"0" * 64}"\n')
    line = one_line_error(chatterm("pull", "pinned"))
    assert "has changed since the catalogue recorded it" in line and f"chatterm pull local/smol-GGUF:{SMOL}" in line


def test_not_enough_disk_space_is_refused_before_downloading(hub, chatterm):
    hub.repos["local/huge-GGUF"] = Repo({"huge-Q4_K_M.gguf": HubFile(b"x" * 1000, advertised_size=10**15)})
    line = one_line_error(chatterm("pull", "local/huge-GGUF"))
    assert "not enough disk space" in line and "1000.0 TB" in line
    assert hub.ranges("huge-Q4_K_M.gguf") == []


def test_running_out_of_space_mid_download_keeps_the_part(hub, smol_entry):
    def limit_file_size() -> None:  # writes past 5 MB fail as on a full disk (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (5_000_000, 5_000_000))
    r = subprocess.run([sys.executable, "-m", "chatterm", "pull", smol_entry], capture_output=True,
                       stdin=subprocess.DEVNULL, preexec_fn=limit_file_size, timeout=120)
    line = one_line_error(r)
    assert "disk full writing" in line and "the same pull resumes there" in line
    assert parts_of("local/smol-GGUF") and not store.path_for("local/smol-GGUF", SMOL).exists()


def test_missing_and_gated_repositories(hub, chatterm, monkeypatch):
    line = one_line_error(chatterm("pull", "local/nothing-GGUF"))
    assert "no model repository local/nothing-GGUF" in line
    line = one_line_error(chatterm("pull", "local/gated-GGUF"))
    assert "local/gated-GGUF is gated" in line and "HF_TOKEN" in line
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    assert chatterm("pull", "local/gated-GGUF").returncode == 0
    assert store.path_for("local/gated-GGUF", "tiny-Q8_0.gguf").is_file()


def test_unreachable_hub_and_unknown_names_are_one_line(chatterm, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert "cannot reach http://127.0.0.1:9" in one_line_error(chatterm("pull", "owner/repo"))
    assert "unknown model 'nonsense'" in one_line_error(chatterm("pull", "nonsense"))
    assert "nothing to pull" in one_line_error(chatterm("pull", "smollm2"))
    assert "not downloaded yet: chatterm pull qwen2.5-0.5b" in one_line_error(chatterm("-m", "qwen2.5-0.5b", "hi"))


def test_models_lists_the_catalogue_with_chinese_marked(chatterm):
    r = chatterm("models")
    assert r.returncode == 0
    rows = {line.split()[0]: line for line in r.stdout.decode().splitlines()[1:] if line.strip()}
    assert "中文" in rows["qwen2.5-1.5b-instruct"] and "中文" not in rows["llama3.2-1b"]
    assert "built in" in rows["smollm2"] and " no " in rows["qwen3-4b"] and "≈" in rows["qwen3-4b"]
    assert "RAM available" in r.stdout.decode()


def test_rm_removes_only_pulled_models(hub, chatterm):
    assert "was not pulled" in one_line_error(chatterm("rm", "smollm2"))
    assert "is not downloaded" in one_line_error(chatterm("rm", "qwen3-4b"))
    assert chatterm("pull", "local/tiny-GGUF:q8_0").returncode == 0
    assert chatterm("rm", "local/tiny-GGUF:q8_0").returncode == 0
    assert store.installed() == []


def test_the_repl_offers_to_pull_a_missing_model(hub, smol_entry, spawn):
    terminal = spawn("--temperature", "0")
    terminal.sendline("/model smol-hub")
    terminal.expect(r"not downloaded yet \(local/smol-GGUF, 0.1 GB\)\. Pull it now\? \[Y/n\]")
    terminal.sendline("y")
    terminal.expect("now chatting with smol-hub", timeout=120)
    assert store.path_for("local/smol-GGUF", SMOL).is_file()
    terminal.sendline("/models")
    terminal.expect("smol-hub +yes")
    terminal.quit()


def test_pull_shows_a_progress_bar_on_a_terminal(hub, smol_entry, spawn):
    hub.faults.bytes_per_s = 30e6
    terminal = spawn("pull", smol_entry, ready=None, threads=False)  # COMMAND comes first
    terminal.expect(r"MB/s")  # rich's bar: size, speed, time left
    terminal.expect("SHA-256 verified", timeout=60)
    terminal.expect(pexpect.EOF)
