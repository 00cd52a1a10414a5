"""`rapo eval`: benchmark layouts checked against the benchmarks' own files, resume after SIGKILL, scores by round."""

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from rapo.agent.loop.state import Evaluation
from rapo.agent.runs.eval_layouts import slots
from rapo.agent.runs.evaluation import prompt_variants
from rapo.agent.runs.trajectory import TrajectoryStore
from rapo.common import InputFileError
from tests.conftest import shared_data
from tests.test_cli import RAPO, assert_one_line_error, rapo

STAND_IN = '''
from pathlib import Path

def score(bench, folder, group, lines):
    """A stand-in metric: the share of the folder's videos that exist, plus the variant's position / 100."""
    videos = sorted(Path(folder).glob("*.mp4"))
    order = ["input", "stage1", "round0", "round1"].index(lines[0]["variant"])
    assert all(line["groups"] for line in lines)
    return len(videos) / (5 * len({line["prompt_id"] for line in lines})) + order / 100
'''


@pytest.fixture
def llm_env(monkeypatch, tiny_llm):
    """Every `rapo` subprocess uses the tiny random LLM: these tests are about files, not words."""
    monkeypatch.setenv("RAPO_LLM", str(tiny_llm))
    monkeypatch.setenv("RAPO_TARGET", "short")


def test_vbench_sample_is_what_vbench_reads_and_scores_by_round(tmp_path, llm_env):
    # Three prompts of VBench's own list, one of them in two dimensions
    info_file = shared_data("benchmarks", "vbench", "VBench_full_info.from_pypi_vbench-0.1.5.json")
    full_info = json.loads(info_file.read_text())
    two = next(p for p in full_info if len(p["dimension"]) == 2)
    chosen = [two, *[p for p in full_info if p["dimension"] == ["color"]][:1],
              *[p for p in full_info if p["dimension"] == ["human_action"]][:1]]  # fmt: skip
    prompts = tmp_path / "vbench.json"
    prompts.write_text(json.dumps(chosen))
    run = tmp_path / "run"

    # Optimized on the fly, then sampled: 5 seeds, input, Stage 1 and rounds 0 and 1
    proc = rapo("eval", "sample", "vbench", "--prompts", str(prompts), "--out", str(run), "--rounds", "0,1",
                "--critics", "flow")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    folder = run / "eval" / "vbench"
    for variant in ("input", "stage1", "round0", "round1"):
        # What VBench's standard mode looks up: for each of its prompts in a dimension, `{prompt}-{i}.mp4`, i < 5
        expected = {
            f"{p['dimension'][k]}/{p['prompt_en']}-{i}.mp4"
            for p in chosen for k in range(len(p["dimension"])) for i in range(5)
        }  # fmt: skip
        written = {str(f.relative_to(folder / variant)) for f in (folder / variant).rglob("*.mp4")}
        assert written == expected
        assert all(name.split("/")[1].rsplit("-", 1)[0] in {p["prompt_en"] for p in full_info} for name in written)
    lines = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 3 * 5 * 4 and all("key" in line for line in lines)
    assert {line["seed"] for line in lines} == {0, 1, 2, 3, 4}
    input_lines = [line for line in lines if line["variant"] == "input"]
    assert all(line["prompt"] == line["input"] for line in input_lines)
    # The dimension folders of one prompt hold the same video (hard links into the run's cache), not two renders
    video = f"{two['prompt_en']}-0.mp4"
    first, second = (folder / "input" / d / video for d in two["dimension"])
    assert first.samefile(second)

    # Sampled again: nothing new is made
    again = rapo("eval", "sample", "vbench", "--out", str(run), "--rounds", "0,1")
    assert again.returncode == 0, again.stderr
    assert again.stderr.strip().splitlines()[-1].startswith("0 videos made, 60 from the cache")
    # ... and other settings are refused, not mixed in
    assert_one_line_error(
        rapo("eval", "sample", "vbench", "--out", str(run), "--rounds", "0,1", "--seeds", "2"), "seeds differ"
    )

    # Without VBench's package: a clear message. With a stand-in evaluator: a table by dimension and round, a plot
    no_package = rapo("eval", "score", "vbench", str(run))
    assert_one_line_error(no_package, "VBench's evaluator is not installed: `pip install vbench`")
    stand_in = tmp_path / "metric.py"
    stand_in.write_text(STAND_IN)
    scored = rapo("eval", "score", "vbench", str(run), "--evaluator", f"{stand_in}:score")
    assert scored.returncode == 0, scored.stderr
    table = json.loads((folder / "scores.json").read_text())
    assert table["variants"] == ["input", "stage1", "round0", "round1"]
    assert sorted(table["table"]) == sorted({d for p in chosen for d in p["dimension"]})
    for group, row in table["table"].items():
        assert row == pytest.approx({"input": 1.0, "stage1": 1.01, "round0": 1.02, "round1": 1.03}), group
    assert (folder / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "color" in scored.stdout and "round1" in scored.stdout
    assert (folder / "scores.csv").read_text().splitlines()[-1].startswith("mean,1.0000,1.0100,1.0200,1.0300")

    # The run page shows the table and the plot
    from fastapi.testclient import TestClient

    from rapo.agent.web.app import create_app

    client = TestClient(create_app([run], None))
    page = client.get("/runs/0").text
    assert "vbench: score by round" in page and "1.0300" in page
    assert client.get("/runs/0/files/eval/vbench/scores.png").status_code == 200


def test_a_killed_sample_resumes_and_makes_no_video_twice(tmp_path, llm_env):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a dog running on the beach\na red car at night\n")
    run = tmp_path / "run"
    proc = rapo("optimize", str(prompts), "--out", str(run), "--max-iters", "1", "--critics", "flow")
    assert proc.returncode == 0, proc.stderr
    log = run / "videos" / "generation.log"
    before = len(log.read_text().splitlines())

    # 2 prompts x 30 seeds: killed after a few videos of the sample
    args = ["eval", "sample", "phygenbench", "--out", str(run), "--rounds", "1", "--seeds", "30"]
    sampler = subprocess.Popen([*RAPO, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and sampler.poll() is None:
        if len(log.read_text().splitlines()) >= before + 5:
            break
        time.sleep(0.05)
    assert sampler.poll() is None, "the sample finished before it could be killed"
    sampler.send_signal(signal.SIGKILL)
    sampler.wait()
    assert not (run / "eval" / "phygenbench" / "samples.jsonl").exists()
    assert_one_line_error(rapo("eval", "score", "phygenbench", str(run)), "did not finish: run `rapo eval sample`")

    resumed = rapo(*args)
    assert resumed.returncode == 0, resumed.stderr
    keys = Counter(json.loads(line)["key"] for line in log.read_text().splitlines())
    assert max(keys.values()) == 1, "a video was made twice"
    folder = run / "eval" / "phygenbench"
    lines = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 2 * 30 * 3 and all("key" in line and (folder / line["paths"][0]).is_file() for line in lines)
    # One video a prompt per seed folder, named as PhyGenEval reads them
    seed7 = sorted(p.name for p in (folder / "round1" / "seed7").iterdir())
    assert seed7 == ["output_video_1.mp4", "output_video_2.mp4"]
    assert_one_line_error(rapo("eval", "score", "phygenbench", str(run)), "no evaluator for phygenbench is installed")


def test_layouts_of_the_single_video_benchmarks():
    prompts = [("a cat", {"category": "action"}), ("a dog", {"category": "motion"}), ("a cow", {"category": "action"})]
    comp = slots("t2v-compbench", prompts, seeds=1)
    assert [s.paths for s in comp] == [["action/0001.mp4"], ["motion/0001.mp4"], ["action/0002.mp4"]]
    assert [s.paths for s in slots("t2v-compbench", prompts[:1], seeds=2)] == [
        ["seed0/action/0001.mp4"], ["seed1/action/0001.mp4"]
    ]  # fmt: skip
    assert [s.paths for s in slots("phygenbench", prompts, 1)][2] == ["output_video_3.mp4"]
    assert [s.paths for s in slots("videophy", prompts, 1)][1] == ["videos/0001.mp4"]
    with pytest.raises(InputFileError, match="prompt 1: VBench names each video by its prompt"):
        slots("vbench", [("a cat", {}), ("AC/DC on stage", {})], 5)
    with pytest.raises(InputFileError, match="unknown benchmark 'vbench2'"):
        slots("vbench2", prompts, 1)


def test_variants_are_stage1s_choice_and_the_best_by_each_round(tmp_path):
    store = TrajectoryStore(tmp_path / "t.sqlite")
    store.start_run("r", {}, ["a dog", "a cat"])

    def ev(iteration: int, index: int, prompt: str, flow: float) -> Evaluation:
        return Evaluation(iteration=iteration, index=index, prompt=prompt, scores={"flow": flow, "temporal": flow})

    store.record("r", 0, [ev(0, 0, "stage1 pick", 0.4), ev(0, 1, "other branch", 0.5), ev(1, 0, "revised", 0.3),
                          ev(2, 0, "revised again", 0.9)], [])  # fmt: skip
    variants = prompt_variants(store, "r", [0, 1, 2, 4])
    assert variants[0].texts == {
        "input": "a dog",
        "stage1": "stage1 pick",
        "round0": "other branch",
        "round1": "other branch",
        "round2": "revised again",
        "round4": "revised again",
    }
    assert variants[1].texts == {"input": "a cat"}
    assert variants[1].missing["round2"] == "prompt 1 has no scored candidate by round 2"
    store.close()


def test_eval_sample_needs_prompts_or_a_run(tmp_path):
    assert_one_line_error(rapo("eval", "sample", "vbench", "--out", str(tmp_path / "none")), "--prompts is needed: ")
    assert_one_line_error(rapo("eval", "sample", "vbench", "--out", str(tmp_path), "--rounds", "1,x"), "--rounds")
    assert not Path(tmp_path / "none").exists()
