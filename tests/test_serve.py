"""`rapo serve`: `rapo refine` and `rapo chat` answered by a warm server with the same models, as in-process."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from rapo.agent.runs.refine_client import RemoteStage1, ServerInfo
from rapo.tools.stage1 import Stage1Settings
from tests.test_cli import RAPO, rapo


@pytest.fixture
def served(tmp_path, monkeypatch, tiny_llm):
    """A `rapo serve` on the tiny random LLM, in a RAPO_HOME of its own; stopped (SIGTERM) after the test."""
    monkeypatch.setenv("RAPO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("RAPO_LLM", str(tiny_llm))
    monkeypatch.setenv("RAPO_TARGET", "short")
    server = subprocess.Popen([*RAPO, "serve"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    folder = tmp_path / "home" / "servers"
    deadline = time.monotonic() + 300
    while not list(folder.glob("*.json")) and server.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server.poll() is None, server.stderr.read()
    info = json.loads(next(folder.glob("*.json")).read_text())
    yield server, info, folder
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def served_counts(info: dict) -> dict[str, int]:
    """How many requests of each kind the server has answered."""
    with urllib.request.urlopen(f"{info['url']}/health", timeout=10) as response:
        return json.loads(response.read())["served"]


def served_prompts(info: dict) -> int:
    return served_counts(info).get("refine", 0)


def test_refine_is_answered_by_the_server_with_the_result_it_would_compute(served, tmp_path):
    server, info, folder = served
    assert info["url"].startswith("http://127.0.0.1:") and info["pid"] == server.pid

    remote = rapo("refine", "--json", "--seed", "3", "a dog running on the beach")
    assert remote.returncode == 0, remote.stderr
    assert served_prompts(info) == 1
    local = rapo("refine", "--json", "--seed", "3", "--local", "a dog running on the beach")
    assert local.returncode == 0, local.stderr
    assert served_prompts(info) == 1  # --local did not ask it
    remote_result, local_result = json.loads(remote.stdout), json.loads(local.stdout)
    assert remote_result["timings"]["load"] == 0.0
    remote_result.pop("timings"), local_result.pop("timings")
    assert remote_result == local_result

    # A file goes through it too, and a bad prompt is the same one-line error as in-process
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red car at night\na cat on a sofa\n")
    batch = rapo("refine", "--file", str(prompts), "--out", str(tmp_path / "out.jsonl"))
    assert batch.returncode == 0, batch.stderr
    assert [json.loads(line)["line"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == [1, 2]
    assert served_prompts(info) == 3
    long = rapo("refine", "x" * 3000)
    assert long.returncode == 2 and "prompt is 3000 characters" in long.stderr

    # The client never imports torch or transformers: that is where a cold start's seconds go
    timing = subprocess.run([sys.executable, "-X", "importtime", "-m", "rapo", "refine", "a cat"],
                            capture_output=True, text=True, env=os.environ.copy(), timeout=300)  # fmt: skip
    assert timing.returncode == 0, timing.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in timing.stderr.splitlines() if "|" in line}
    assert imported and not imported & {"torch", "transformers", "sentence_transformers", "langgraph"}
    assert served_prompts(info) == 4

    # Stopped with SIGTERM, it takes its announcement with it
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)
    assert not list(folder.glob("*.json"))


def test_a_server_with_other_models_or_a_dead_one_is_not_used(served, tmp_path, tiny_llm):
    server, info, folder = served
    # The same models spelled another way are the same identity: the server answers
    proc = rapo("refine", "--adapter", "none", "--llm", str(Path(tiny_llm) / ".." / Path(tiny_llm).name), "a red car")
    assert proc.returncode == 0, proc.stderr
    assert served_prompts(info) == 1
    # Another LLM folder is another identity: the command loads its own models
    other = tmp_path / "other-llm"
    shutil.copytree(tiny_llm, other)
    proc = rapo("refine", "--llm", str(other), "a red car at night")
    assert proc.returncode == 0, proc.stderr
    assert served_prompts(info) == 1
    proc = rapo("refine", "--graph", str(tmp_path / "nope.sqlite"), "a red car")
    assert proc.returncode == 2 and "graph file not found" in proc.stderr
    assert served_prompts(info) == 1

    # Killed (no clean-up): its announcement is stale, the next command runs in-process and removes it
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=60)
    assert list(folder.glob("*.json"))
    proc = rapo("refine", "a red car at night")
    assert proc.returncode == 0, proc.stderr
    assert not list(folder.glob("*.json"))


def test_chat_is_answered_by_the_server_with_the_session_it_would_have_locally(served, tmp_path):
    server, info, folder = served
    # Stage 1, a modifier banned (Stage 1 again, through the lookup), a change in words (the reviser on the plain
    # LLM), an undo and a resume: every step as the in-process chat takes it, with the same seeds
    turns = "b 0\nc make it cinematic\nu 0\nq\n"

    def chat(home: str, *extra: str) -> str:
        args = [*RAPO, "chat", "a dog running on the beach", "--home", str(tmp_path / home), *extra]
        proc = subprocess.run(args, input=turns, capture_output=True, text=True, timeout=600, env=os.environ.copy())
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    remote = chat("remote")
    session_id = re.search(r"session ([0-9a-f]{8})", remote).group(1)
    counts = served_counts(info)  # Stage 1 twice; the reviser's answers (a retry is another request)
    assert counts["refine"] == 2 and counts["generate"] >= 1 and "lookup" not in counts
    local = chat("local", "--local")
    assert re.sub(session_id, "ID", remote) == re.sub(r"(?<=session )[0-9a-f]{8}", "ID", local)
    assert served_counts(info) == counts  # --local did not ask it
    assert "banned" in remote and "error" not in remote

    # A resumed session goes through it too, and the chat client loads no model: it never imports torch
    resume = [sys.executable, "-X", "importtime", "-m", "rapo", "chat", "--session", session_id,
              "--home", str(tmp_path / "remote")]  # fmt: skip
    timing = subprocess.run(resume, input="c brighter\nq\n", capture_output=True, text=True, env=os.environ.copy(),
                            timeout=300)  # fmt: skip
    assert timing.returncode == 0, timing.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in timing.stderr.splitlines() if "|" in line}
    assert imported and not imported & {"torch", "transformers", "sentence_transformers"}
    resumed = served_counts(info)
    assert resumed["refine"] == 2 and resumed["generate"] > counts["generate"]

    # The rest of a chat's (and the LLM controller's) surface: the graph lookup and the record of the models
    stage1 = RemoteStage1(ServerInfo.model_validate(info), Stage1Settings(target="short"))
    refined = json.loads(rapo("refine", "--json", "a dog running on the beach").stdout)
    retrieval = json.loads(stage1.lookup.retrieve("a dog running on the beach").model_dump_json())
    assert retrieval["modifiers"] == refined["modifiers"] and retrieval["scenes"] == refined["scenes"]
    assert stage1.models() == refined["models"] and stage1.llm.model_id == refined["models"]["llm"]
    assert served_counts(info)["lookup"] == 1
