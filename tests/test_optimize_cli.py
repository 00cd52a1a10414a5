"""`rapo optimize` as a user runs it overnight: real subprocesses, SIGKILL, --resume."""

import json
import signal
import subprocess
import time
from collections import Counter

import pytest

from agent.runs.trajectory import TrajectoryStore
from tests.test_cli import RAPO, assert_one_line_error, rapo

PROMPTS = [
    "a dog running on the beach",
    "a chef chopping onions in a kitchen",
    "a red car driving at night",
    "a cat playing with a ball",
    "a boat on a calm lake",
]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--generator", "/nonexistent/wan"], "/nonexistent/wan"),
        (["--critics", "flow,optical"], "--critics: unknown critic(s) optical; choose from"),
        (["--threshold", "flow=1.5"], "--threshold 'flow=1.5': scores are in [0, 1]"),
        (["--threshold", "clip=0.5"], "--threshold 'clip=0.5': expected METRIC=VALUE with METRIC one of"),
        (["--critics", "flow,vlm"], "--critics vlm needs --vlm openai:"),
        (["--critics", "clip"], "--critics clip needs --clip PATH"),
        (["--critics", "vlm", "--vlm", "openai:http://127.0.0.1:9/v1#judge"], "127.0.0.1:9/v1 cannot be reached"),
        (["--controller", "llm"], "--controller llm needs a served model with tool calling"),
        (["--controller", "smart"], "--controller 'smart': choose policy or llm"),
    ],
)
def test_bad_options_fail_before_any_work(tmp_path, args, message):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a dog\n")
    out = tmp_path / "run"
    assert_one_line_error(rapo("optimize", str(prompts), "--out", str(out), *args), message)
    assert not out.exists()


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
    proc = subprocess.Popen([*RAPO, "optimize", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
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
