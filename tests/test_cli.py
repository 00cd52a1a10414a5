"""The `rapo` command as a user runs it: real subprocesses, real files, the real models."""

import json
import os
import subprocess
import sys

import pytest

RAPO = [sys.executable, "-m", "rapo"]


def rapo(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*RAPO, *args], capture_output=True, text=True, timeout=timeout, env=os.environ.copy())


def assert_one_line_error(proc: subprocess.CompletedProcess, message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["refine", ""], "prompt is empty"),
        (["refine", "x" * 10_000], "prompt is 10000 characters; the limit is 2000"),
        (["refine", "a dog", "--graph", "/nonexistent/g.sqlite"], "graph file not found: /nonexistent/g.sqlite"),
        (["refine"], "give either a PROMPT or --file FILE"),
        (["graph", "query", " "], "query text is empty"),
        (["graph", "build", "/nonexistent/c.tsv", "--graph", "/tmp/x.sqlite"], "file not found: /nonexistent/c.tsv"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    assert_one_line_error(rapo(*args), message)


def test_corrupt_graph_and_missing_model(tmp_path, graph):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"\x00garbage" * 512)
    assert_one_line_error(rapo("refine", "a dog", "--graph", str(bad)), f"not a readable rapo graph: {bad}")
    missing = tmp_path / "no-model"
    assert_one_line_error(
        rapo("refine", "a dog", "--graph", str(graph), "--llm", str(missing)), f"LLM not found: {missing}"
    )


def test_non_utf8_prompt_file_writes_nothing(tmp_path, graph):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes(b"a dog on the beach\n\xff\xfe a cat\n")
    out = tmp_path / "out.jsonl"
    proc = rapo("refine", "--file", str(prompts), "--out", str(out), "--graph", str(graph))
    assert_one_line_error(proc, f"{prompts}:2: not UTF-8 text")
    assert list(tmp_path.iterdir()) == [prompts]


@pytest.mark.slow
def test_refine_json_fields_and_seed(graph):
    args = ("refine", "--json", "--seed", "5", "--target", "wan", "--graph", str(graph), "a dog running on the beach")
    first, second = rapo(*args), rapo(*args)
    assert first.returncode == 0, first.stderr
    result = json.loads(first.stdout)
    for field in ("input", "prompt", "branch", "candidates", "modifiers", "rejected", "timings", "models"):
        assert field in result
    assert all("score" in m for m in result["modifiers"])
    assert all("reason" in r for r in result["rejected"])
    assert result["models"]["llm"] == "SmolLM2-135M-Instruct" and result["seed"] == 5
    # The default is the shipped distilled rewriter, for Wan's profile; its answers continue the user's prompt.
    assert result["models"]["adapter"].endswith("tools/adapters/vbench-smollm2")
    assert result["models"]["templates"] == ["distill_rewrite@2"] and result["target"]["name"] == "wan"
    # Answers (kept or refused) start with the prompt; the verifier's rejections are single added sentences.
    answers = [r for r in result["rejected"] if r["step"] != "verify"]
    texts = [c["text"] for c in result["candidates"]] + [r["text"] for r in answers]
    assert all(t.lower().startswith("a dog running on the beach") for t in texts)
    dropped = [r for r in result["rejected"] if r["step"] == "verify"]
    assert all(not r["text"].lower().startswith("a dog running on the beach") for r in dropped)
    assert result["models"]["verifier"].startswith("minilm-judge@") and "facets" in result
    assert all(len(c["text"].split()) <= 100 for c in result["candidates"])
    assert json.loads(second.stdout)["prompt"] == result["prompt"]


@pytest.mark.slow
def test_prompt_file_resumes_and_keeps_going_past_bad_lines(tmp_path, graph):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog running on the beach\n\n" + "y" * 3000 + "\na chef cooking in a kitchen\n")
    out = tmp_path / "out.jsonl"
    # A run killed after its first line left this behind (with a torn second line).
    done = {"line": 1, "input": "a dog running on the beach", "prompt": "from the first run"}
    (tmp_path / "out.jsonl.partial").write_text(json.dumps(done) + '\n{"line": 3, "inp')
    proc = rapo("refine", "--file", str(prompts), "--out", str(out), "--graph", str(graph))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 3, 4]
    assert rows[0]["prompt"] == "from the first run"
    assert "3000 characters" in rows[1]["error"]
    assert "kitchen" in rows[2]["prompt"].lower()
    assert not (tmp_path / "out.jsonl.partial").exists()


def test_graph_build_stats_and_query(tmp_path):
    captions = tmp_path / "captions.tsv"
    captions.write_text(
        "modality\tcaption\n"
        "video\ta man is riding a horse on a beach\n"
        "video\ta woman is chopping onions in a kitchen\n"
        "image\ta dog running in a park\n"
        "video\ta dog is running on the beach at sunset\n"
    )
    graph = tmp_path / "g.sqlite"
    proc = rapo("graph", "build", str(captions), "--graph", str(graph), "--where", "modality=video")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(rapo("graph", "stats", "--graph", str(graph), "--json").stdout)
    assert stats["meta"]["sources"][0]["format"] == "captions-tsv"
    assert stats["nodes"]["scene"] >= 2 and stats["meta"]["captions"] >= 2
    found = json.loads(
        rapo("graph", "query", "a horse on the beach", "--graph", str(graph), "--threshold", "0", "--json").stdout
    )
    assert found["scenes"] and found["modifiers"]
