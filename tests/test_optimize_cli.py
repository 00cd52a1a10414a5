"""`rapo optimize` as a user runs it overnight: real subprocesses, SIGKILL, --resume."""

import json
import signal
import subprocess
import time
from collections import Counter

import pytest

from rapo.agent.runs.trajectory import TrajectoryStore
from tests.test_cli import RAPO, assert_one_line_error, rapo

PROMPTS = [
    "a dog running on the beach",
    "a chef chopping onions in a kitchen",
    "a red car driving at night",
    "a cat playing with a ball",
    "a boat on a calm lake",
]


def kill_after_videos(args: list[str], log, videos: int) -> None:
    """Start `rapo optimize ARGS` and SIGKILL it once `log` (generation.log) has `videos` lines."""
    proc = subprocess.Popen([*RAPO, "optimize", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= videos:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--generator", "/nonexistent/wan"], "/nonexistent/wan"),
        (["--critics", "flow,optical"], "--critics: unknown critic(s) optical; choose from"),
        (["--threshold", "flow=1.5"], "--threshold 'flow=1.5': scores are in [0, 1]"),
        (["--threshold", "clip=0.5"], "--threshold 'clip=0.5': expected METRIC=VALUE with METRIC one of"),
        (["--critics", "flow,vlm"], "the VLM judge (--critics vlm, --select tournament) needs --vlm openai:"),
        (["--select", "tournament"], "the VLM judge (--critics vlm, --select tournament) needs --vlm openai:"),
        (["--select", "best"], "--select 'best': choose rank or tournament"),
        (["--seeds", "3", "--max-videos", "2"], "--max-videos 2 is less than --seeds 3"),
        (["--critics", "clip"], "--critics clip needs --clip PATH"),
        (["--critics", "vlm", "--vlm", "openai:http://127.0.0.1:9/v1#judge"], "127.0.0.1:9/v1 cannot be reached"),
        (["--controller", "llm"], "--controller llm needs a served model with tool calling"),
        (["--controller", "smart"], "--controller 'smart': choose policy or llm"),
        (["--overlap", "2", "--ray"], "--overlap is for one process; with --ray each worker runs one prompt at a time"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path, args, message):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a dog\n")
    out = tmp_path / "run"
    assert_one_line_error(rapo("optimize", str(prompts), "--out", str(out), *args), message)
    assert not out.exists()


def test_prompt_files_keep_their_metadata(tmp_path):
    from rapo.agent.runs.optimize import read_prompt_list
    from rapo.common import InputFileError

    files = {
        "vbench.json": json.dumps([{"prompt_en": "a toilet, frozen in time", "dimension": ["temporal_flickering"]}]),
        "phygen.jsonl": json.dumps({"caption": "Pouring milk into tea.", "physical_laws": "Milk diffuses."}) + "\n",
        "rapo.csv": 'captions,phys_law\nA waterfall.,"Due to gravity, water falls."\n',
        "plain.txt": "a dog\n\n",
    }
    read = {}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        read[name] = [(p.text, p.meta) for p in read_prompt_list(tmp_path / name)]
    assert read == {
        "vbench.json": [("a toilet, frozen in time", {"dimension": ["temporal_flickering"]})],
        "phygen.jsonl": [("Pouring milk into tea.", {"physical_laws": "Milk diffuses."})],
        "rapo.csv": [("A waterfall.", {"phys_law": "Due to gravity, water falls."})],
        "plain.txt": [("a dog", {})],
    }
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a dog"}\n{"law": "gravity"}\n')
    with pytest.raises(InputFileError, match=r"bad.jsonl:2: expected an object with one of the keys prompt"):
        read_prompt_list(tmp_path / "bad.jsonl")


def test_a_physical_law_goes_from_the_prompt_file_to_the_physics_critic_and_the_outputs(tmp_path, graph, tiny_llm):
    prompts = tmp_path / "prompts.jsonl"
    law = "Due to gravity, the water falls from the rock into the pool."
    prompts.write_text(json.dumps({"prompt": "a waterfall over a rock", "physical_laws": law}) + "\n")
    run_dir = tmp_path / "run"
    proc = rapo("optimize", str(prompts), "--out", str(run_dir), "--graph", str(graph), "--llm", str(tiny_llm),
                "--critics", "physics,temporal", "--max-iters", "0", "--candidates", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [row] = [json.loads(line) for line in (run_dir / "best_prompts.jsonl").read_text().splitlines()]
    assert row["status"] == "done" and row["meta"] == {"physical_laws": law}
    assert "physics" in row["best_scores"]
    store = TrajectoryStore(run_dir / "trajectory.sqlite")
    run_id = store.runs()[0][0]
    [call] = [c for c in store.tool_calls(run_id, 0) if c.tool == "critic_physics"]
    assert call.args["meta"] == {"physical_laws": law} and call.args["prompt"] == "a waterfall over a rock"
    assert law in store.evaluations(run_id, 0)[0].feedback["physics"]
    shown = rapo("runs", "show", str(run_dir))
    assert shown.returncode == 0 and f"physical_laws: {law}" in " ".join(shown.stdout.split())


def test_two_seeds_render_each_candidate_twice_and_a_killed_run_resumes_exactly_once(tmp_path, graph, tiny_llm):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    run_dir = tmp_path / "run"
    args = [str(prompts), "--out", str(run_dir), "--graph", str(graph), "--llm", str(tiny_llm), "--seeds", "2",
            "--critics", "temporal,imaging", "--max-iters", "1", "--candidates", "1"]  # fmt: skip
    log = run_dir / "videos" / "generation.log"
    kill_after_videos(args, log, 3)
    resumed = rapo("optimize", *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr

    calls = [json.loads(line) for line in log.read_text().splitlines()]
    generated = Counter(c["key"] for c in calls)
    assert generated and max(generated.values()) == 1  # no video made twice, across the kill
    rows = [json.loads(line) for line in (run_dir / "best_prompts.jsonl").read_text().splitlines()]
    assert all(r["status"] == "done" for r in rows)
    store = TrajectoryStore(run_dir / "trajectory.sqlite")
    run_id = store.runs()[0][0]
    rendered = set()
    for row in store.prompts(run_id):
        evaluations = [e for e in store.evaluations(run_id, row.prompt_id) if e.scores]
        assert evaluations and all(set(e.seed_scores) == {"0", "1"} for e in evaluations)
        for e in evaluations:  # the mean over the two seeds
            assert e.scores["temporal"] == pytest.approx(sum(s["temporal"] for s in e.seed_scores.values()) / 2)
            rendered.add(e.prompt)
        seeds = [c.args["seed"] for c in store.tool_calls(run_id, row.prompt_id) if c.tool == "generate_video"]
        assert sorted(set(seeds)) == [0, 1]
    assert len(generated) == 2 * len(rendered)  # every candidate on both seeds, each video made once


def test_unreadable_prompt_file(tmp_path):
    prompts = tmp_path / "p.txt"
    prompts.write_bytes(b"a dog\n\xff\n")
    assert_one_line_error(rapo("optimize", str(prompts), "--out", str(tmp_path / "run")), f"{prompts}:2: not UTF-8")


@pytest.mark.slow
def test_killed_run_resumes_and_never_generates_a_video_twice(tmp_path, graph):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    run_dir = tmp_path / "run"
    args = [str(prompts), "--out", str(run_dir), "--graph", str(graph), "--generator", "tiny-wan",
            "--critics", "temporal,imaging", "--max-iters", "1", "--candidates", "1"]  # fmt: skip
    log = run_dir / "videos" / "generation.log"

    # 1. Start, and kill -9 once a few videos exist
    kill_after_videos(args, log, 3)
    assert not (run_dir / "best_prompts.jsonl").exists()

    # 2. A second start without --resume refuses to mix runs; with --resume it finishes
    assert_one_line_error(rapo("optimize", *args), "holds a run already: add --resume")
    resumed = rapo("optimize", *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr

    # 3. Every prompt done exactly once, in order; every video generated exactly once
    rows = [json.loads(line) for line in (run_dir / "best_prompts.jsonl").read_text().splitlines()]
    assert [r["input"] for r in rows] == PROMPTS and all(r["status"] == "done" for r in rows), "\n".join(
        [*(f"#{r['prompt_id']} {r['status']}: {r['stop_reason']} {r['error']}" for r in rows), resumed.stderr[-2000:]]
    )
    generated = Counter(json.loads(line)["key"] for line in log.read_text().splitlines())
    assert generated and max(generated.values()) == 1
    store = TrajectoryStore(run_dir / "trajectory.sqlite")
    run_id = store.runs()[0][0]
    used = {e.video_key for row in store.prompts(run_id) for e in store.evaluations(run_id, row.prompt_id)}
    assert used <= set(generated) and len(store.runs()) == 1
    for row in rows:
        assert (run_dir / row["best_video"]).is_file()
    export = tmp_path / "best.jsonl"
    assert rapo("runs", "export", str(run_dir), "--out", str(export)).returncode == 0
    assert [json.loads(line)["best_prompt"] for line in export.read_text().splitlines()] == [
        r["best_prompt"] for r in rows
    ]
    shown = rapo("runs", "show", str(run_dir))
    assert shown.returncode == 0 and "temporal" in shown.stdout


def _outcome(run_dir) -> dict:
    """What a run decided, without its schedule: every prompt's row, candidates, videos, scores and tool calls."""
    rows = [json.loads(line) for line in (run_dir / "best_prompts.jsonl").read_text().splitlines()]
    store = TrajectoryStore(run_dir / "trajectory.sqlite")
    run_id = store.runs()[0][0]
    rounds = {
        r["prompt_id"]: [e.model_dump() for e in store.evaluations(run_id, r["prompt_id"])] for r in rows
    }  # fmt: skip
    calls = {  # the arguments name files in the run dir; the summaries say "(cached)" and the seconds vary
        r["prompt_id"]: [(c.tool, json.dumps(c.args).replace(str(run_dir), "RUN"), c.ok)
                         for c in store.tool_calls(run_id, r["prompt_id"])]
        for r in rows
    }  # fmt: skip
    store.close()
    return {"rows": rows, "rounds": rounds, "calls": calls}


def test_overlap_changes_the_schedule_never_the_results(tmp_path, graph, tiny_llm, monkeypatch):
    monkeypatch.setenv("RAPO_LLM", str(tiny_llm))
    monkeypatch.setenv("RAPO_TARGET", "short")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS[:4]) + "\n")
    outcomes = []
    for overlap in ("1", "2"):
        run_dir = tmp_path / f"overlap{overlap}"
        proc = rapo("optimize", str(prompts), "--out", str(run_dir), "--graph", str(graph), "--seeds", "2",
                    "--critics", "flow,temporal,imaging", "--max-iters", "1", "--overlap", overlap)  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        outcomes.append(_outcome(run_dir))
    assert [r["status"] for r in outcomes[0]["rows"]] == ["done"] * 4
    assert all(e["scores"] for rounds in outcomes[0]["rounds"].values() for e in rounds)
    assert outcomes[1] == outcomes[0]


def test_a_killed_overlapped_run_resumes_and_makes_every_video_once(tmp_path, graph, tiny_llm):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    run_dir = tmp_path / "run"
    args = [str(prompts), "--out", str(run_dir), "--graph", str(graph), "--llm", str(tiny_llm), "--seeds", "2",
            "--critics", "temporal,imaging", "--max-iters", "1", "--candidates", "1", "--overlap", "2"]  # fmt: skip
    log = run_dir / "videos" / "generation.log"
    kill_after_videos(args, log, 3)
    assert not (run_dir / "best_prompts.jsonl").exists()
    resumed = rapo("optimize", *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr

    generated = Counter(json.loads(line)["key"] for line in log.read_text().splitlines())
    assert generated and max(generated.values()) == 1  # no video made twice, across the kill
    rows = [json.loads(line) for line in (run_dir / "best_prompts.jsonl").read_text().splitlines()]
    assert [r["input"] for r in rows] == PROMPTS and all(r["status"] == "done" for r in rows), resumed.stderr[-2000:]
    store = TrajectoryStore(run_dir / "trajectory.sqlite")
    run_id = store.runs()[0][0]
    used = {e.video_key for row in store.prompts(run_id) for e in store.evaluations(run_id, row.prompt_id)}
    for row in store.prompts(run_id):
        evaluations = store.evaluations(run_id, row.prompt_id)
        assert evaluations and all(set(e.seed_scores) == {"0", "1"} for e in evaluations)
    store.close()
    assert used <= set(generated)
    for row in rows:
        assert (run_dir / row["best_video"]).is_file()
