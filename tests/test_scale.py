"""Batches beyond one process: one store schema on SQLite and PostgreSQL, video claims, Ray workers killed with
SIGKILL, a PostgreSQL restart in the middle of a run, and the one-line errors of `--ray` and `--store`.

Real parts only: a PostgreSQL server (scripts/test starts one), a local Ray instance with two logical GPUs (so the
GPU scheduling path runs, with the tiny generator on the CPU), the real SmolLM2 and real `rapo` subprocesses.
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from rapo.agent.loop.context import SSPOConfig
from rapo.agent.loop.state import Evaluation, ToolCall
from rapo.agent.runs.claims import ClaimedGenerator, VideoClaims, generation_counts
from rapo.agent.runs.distributed import optimize_on_ray, start_workers
from rapo.agent.runs.optimize import PromptItem, open_run, optimize
from rapo.agent.runs.run_spec import RunSpec, build_context
from rapo.agent.runs.schema import LATEST, MIGRATIONS
from rapo.agent.runs.trajectory import TrajectoryStore
from rapo.tools.generator import GenerationParams, video_key
from rapo.tools.tiny_pipelines import TINY_MARKER, save_tiny_pipeline
from tests import test_optimize_cli
from tests.test_cli import RAPO, assert_one_line_error, rapo

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    *test_optimize_cli.PROMPTS,
    "a child flying a kite in a park",
    "an old man reading a newspaper",
    "a horse galloping across a field",
]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_location(request, tmp_path):
    """Where a test may open a new trajectory store: a SQLite file, or an empty PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "trajectory.sqlite"
    return request.getfixturevalue("postgres_url")


# -- One store, two backends ----------------------------------------------------------------------------------------


def test_the_schema_is_migrated_once_and_the_store_round_trips(store_location):
    store, again = TrajectoryStore(store_location), TrajectoryStore(store_location)
    versions = again.db.run(lambda cur: cur.execute("SELECT version FROM rapo_schema ORDER BY version").fetchall())
    assert [v for (v,) in versions] == list(range(1, LATEST + 1))
    store.start_run("r", {"seed": 3}, ["a dog", "a cat"])
    store.start_run("r", {"seed": 4}, ["a dog", "a cat"])  # a resumed run keeps what it has
    evaluation = Evaluation(iteration=0, index=0, prompt="a dog, running", video="v.mp4", scores={"temporal": 0.5})
    call = ToolCall(tool="generate_video", args={"prompt": "a dog"}, summary="v.mp4", seconds=0.25)
    store.record("r", 0, [evaluation], [(0, call)])
    store.record("r", 0, [evaluation.model_copy(update={"scores": {"temporal": 0.75}})], [(0, call)])  # a re-run
    assert store.add_attempt("r", 1, "worker died") == 1 and store.add_attempt("r", 1, "worker died again") == 2
    store.finish("r", 0, store.evaluations("r", 0)[0], "0 revision rounds done")
    assert store.run_config("r") == {"seed": 3}
    assert [(p.status, p.best_scores, p.error) for p in again.prompts("r")] == [
        ("done", {"temporal": 0.75}, None),
        ("pending", None, "worker died again"),
    ]
    assert again.tool_calls("r", 0) == [call] and again.runs()[0][2] == {"done": 1, "pending": 1}


def test_a_store_written_before_versioning_is_adopted(tmp_path):
    path = tmp_path / "trajectory.sqlite"
    with sqlite3.connect(path) as conn:  # the four tables as rapo wrote them before `rapo_schema` existed
        for statement in MIGRATIONS[0][2]:
            conn.execute(statement.replace("DOUBLE PRECISION", "REAL"))
        conn.execute("INSERT INTO runs VALUES ('old', 1.0, '{}')")
        conn.execute(
            "INSERT INTO prompts (run_id, prompt_id, input, status, updated_at) VALUES ('old', 0, 'x', 'done', 1)"
        )
    store = TrajectoryStore(path)
    assert [(p.prompt_id, p.status) for p in store.prompts("old")] == [(0, "done")]
    assert store.add_attempt("old", 0, "why") == 1  # version 2's column was added


@pytest.mark.postgres
def test_run_dirs_sharing_one_postgres_store_each_read_their_own_run(postgres_url, tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")  # rich's tables: one line a row
    store = TrajectoryStore(postgres_url)
    for run_id, prompt in (("run-a", "a dog"), ("run-b", "a cat")):
        store.start_run(run_id, {}, [prompt])
        first = Evaluation(iteration=0, index=0, prompt=f"{prompt}, still", video="a.mp4", scores={"temporal": 0.2})
        best = Evaluation(iteration=1, index=0, prompt=f"{prompt}, running", video="b.mp4", scores={"temporal": 0.9})
        store.record(run_id, 0, [first, best], [])
        store.finish(run_id, 0, best, "1 revision rounds done")
        info = {"run_id": run_id, "prompts_file": "p.txt", "prompts_sha256": "", "settings": {"store": postgres_url}}
        (tmp_path / run_id).mkdir()
        (tmp_path / run_id / "run.json").write_text(json.dumps(info))

    listed = rapo("runs", "list", str(tmp_path / "run-a"), str(tmp_path / "run-b"), str(tmp_path / "nothing"))
    assert listed.returncode == 0 and "run-a" in listed.stdout and "run-b" in listed.stdout, listed.stderr
    assert "not a run dir" in listed.stdout
    exported = rapo("runs", "export", str(tmp_path / "run-b"), "--out", str(tmp_path / "b.txt"), "--format", "vbench")
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "b.txt").read_text() == "a cat, running\n"  # run-b's prompt, not the database's latest run
    data = tmp_path / "data"
    made = rapo("finetune", "dataset", "--runs", str(tmp_path / "run-a"), "--out", str(data), "--margin", "0.1")
    assert made.returncode == 0, made.stderr
    pairs = [json.loads(line) for f in sorted(data.glob("*.jsonl")) for line in f.read_text().splitlines()]
    assert [(p["input"], p["source"]["run_id"]) for p in pairs] == [("a dog", "run-a")]

    (tmp_path / "gone").mkdir()
    info["run_id"] = "run-c"
    (tmp_path / "gone" / "run.json").write_text(json.dumps(info))
    assert_one_line_error(rapo("runs", "show", str(tmp_path / "gone")), "holds no run run-c")


# -- Video claims ----------------------------------------------------------------------------------------------------


@pytest.mark.postgres
def test_two_workers_claiming_one_video_one_generates_and_the_other_reuses_it(postgres_url, tmp_path):
    from diffusers import AutoencoderKLWan, WanPipeline  # noqa: F401 - diffusers' lazy imports race in threads

    TrajectoryStore(postgres_url).start_run("r", {}, ["p"])
    params = GenerationParams(num_frames=17, num_inference_steps=8)
    ready, results = threading.Barrier(2, timeout=120), {}

    def worker(name: str) -> None:  # its own connection and its own pipeline, as a worker process has
        generator = ClaimedGenerator("tiny-wan", VideoClaims(TrajectoryStore(postgres_url), "r", name, poll_s=0.05))
        generator.load()
        ready.wait()
        video = generator.generate("a cat on a sofa", 0, params, tmp_path)
        results[name] = (video, dict(generator.outcomes))

    threads = [threading.Thread(target=worker, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    outcomes = sorted(next(iter(o)) for _, o in results.values())
    assert outcomes == ["generated", "reused"]
    videos = [v for v, _ in results.values()]
    assert videos[0].path == videos[1].path and videos[0].path.is_file()
    key = video_key("tiny-wan", "a cat on a sofa", 0, params)
    assert generation_counts(TrajectoryStore(postgres_url), "r") == {key: 1}
    assert len((tmp_path / "videos" / "generation.log").read_text().splitlines()) == 1


def test_a_dead_workers_claim_is_taken_over_when_its_lease_runs_out(store_location):
    store = TrajectoryStore(store_location)
    assert VideoClaims(store, "r", "dead", lease_s=0.5).acquire("k") == "mine"  # then it is never renewed
    alive = VideoClaims(store, "r", "alive", lease_s=30, poll_s=0.05)
    started = time.monotonic()
    assert alive.acquire("k") == "mine" and time.monotonic() - started >= 0.3
    alive.done("k", 1.5)
    assert VideoClaims(store, "r", "late").acquire("k") == "done"
    assert generation_counts(store, "r") == {"k": 1}


# -- Ray: the same results, a worker killed, exactly once ------------------------------------------------------------


def _spec(graph, run_dir: Path, store: str | None) -> RunSpec:
    return RunSpec(
        generator="tiny-wan", critics=["temporal", "imaging"], config=SSPOConfig(max_iters=0, candidates=2),
        graph=str(graph), run_dir=run_dir, store=store,
    )  # fmt: skip


def _single_process(spec: RunSpec, texts: list[str], embedder) -> list[dict]:
    ctx = build_context(spec, embedder=embedder)  # the same composition root as the CLI's and the workers'
    prompts = [PromptItem(text=t) for t in texts]
    return optimize(prompts, open_run(spec.run_dir, Path("prompts.txt"), prompts, {}, resume=False), ctx)


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.postgres
def test_ray_run_with_a_killed_worker_finishes_every_prompt_once_like_the_single_process_run(
    local_ray, postgres_url, graph, embedder, tmp_path
):
    # 1. The single-process run (SQLite), for the same seeds
    baseline = _single_process(_spec(graph, tmp_path / "single", None), PROMPTS, embedder)
    assert all(r["status"] == "done" for r in baseline)

    # 2. The Ray run on two logical GPUs, PostgreSQL store; SIGKILL the worker that has just made a video
    spec = _spec(graph, tmp_path / "ray", postgres_url)
    items = [PromptItem(text=p) for p in PROMPTS]
    info = open_run(spec.run_dir, Path("prompts.txt"), items, {}, resume=False)
    workers = start_workers(spec, info.run_id, workers=2, gpus=1.0, claim_lease_s=5.0)
    pids = local_ray.get([w.pid.remote() for w in workers])
    outcome = {}
    driver = threading.Thread(target=lambda: outcome.update(rows=optimize_on_ray(items, info, spec, workers)))
    driver.start()
    watch = TrajectoryStore(postgres_url)
    sql = "SELECT owner FROM video_generations ORDER BY at DESC"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and len(rows := watch.db.run(lambda cur: cur.execute(sql).fetchall())) < 3:
        time.sleep(0.2)
    victim = int(rows[0][0].split(":")[1])
    assert victim in pids
    os.kill(victim, signal.SIGKILL)
    driver.join(timeout=900)
    assert not driver.is_alive()

    # 3. Every prompt done once, with the single-process run's best prompts; no video made twice
    rows = outcome["rows"]
    assert [r["input"] for r in rows] == PROMPTS and all(r["status"] == "done" for r in rows), "\n".join(
        f"#{r['prompt_id']} {r['status']}: {r['stop_reason']} {r['error']}" for r in rows
    )
    assert [r["best_prompt"] for r in rows] == [r["best_prompt"] for r in baseline]
    for row, expected in zip(rows, baseline, strict=True):
        assert row["best_scores"] == pytest.approx(expected["best_scores"])
    attempts = watch.db.run(lambda cur: cur.execute("SELECT sum(attempts) FROM prompts").fetchone()[0])
    assert attempts >= 1  # the killed worker's prompt was handed out again
    assert victim not in local_ray.get([w.pid.remote() for w in workers])  # Ray restarted the worker
    counts = generation_counts(watch, info.run_id)
    logged = Counter(json.loads(line)["key"] for line in (spec.run_dir / "videos" / "generation.log").open())
    assert counts and max(counts.values()) == 1 and max(logged.values()) == 1
    for row in rows:  # round 0 only: Stage 1's candidates (one or two, as the guards let them), each scored once
        evaluations = watch.evaluations(info.run_id, row["prompt_id"])
        keys = [(e.iteration, e.index) for e in evaluations]
        assert 1 <= len(keys) <= 2 and len(set(keys)) == len(keys) and {k[0] for k in keys} == {0}

    # 4. Resuming the finished run finds nothing to do and makes nothing
    again = optimize_on_ray(items, info, spec, workers)
    assert [r["best_prompt"] for r in again] == [r["best_prompt"] for r in rows]
    assert generation_counts(watch, info.run_id) == counts


# -- PostgreSQL restarted mid-run ------------------------------------------------------------------------------------


def _postgres_local(state: Path, command: str) -> None:
    env = {**os.environ, "RAPO_POSTGRES_DIR": str(state), "RAPO_POSTGRES_PORT_FROM": "25432"}
    subprocess.run(["bash", str(ROOT / "scripts" / "postgres-local"), command], env=env, check=True, timeout=120)


@pytest.mark.slow
@pytest.mark.postgres
def test_the_run_survives_a_postgres_restart(postgres_server, graph, tmp_path):
    state = Path(tempfile.mkdtemp(prefix="rapo-pg-", dir="/tmp"))  # the server's own user must reach it
    _postgres_local(state, "start")
    try:
        url = f"postgresql://rapo@127.0.0.1:{(state / 'port').read_text().strip()}/rapo"
        prompts = tmp_path / "prompts.txt"
        prompts.write_text("\n".join(PROMPTS[:2]) + "\n")
        run_dir = tmp_path / "run"
        log = run_dir / "videos" / "generation.log"
        args = [str(prompts), "--out", str(run_dir), "--graph", str(graph), "--store", url,
                "--critics", "temporal,imaging", "--max-iters", "0", "--candidates", "1"]  # fmt: skip
        proc = subprocess.Popen([*RAPO, "optimize", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and proc.poll() is None and not log.exists():
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before the restart"
        _postgres_local(state, "stop")
        time.sleep(2)
        _postgres_local(state, "start")
        assert proc.poll() is None, "the run ended while PostgreSQL was down"
        _, stderr = proc.communicate(timeout=900)
        assert proc.returncode == 0, stderr
        rows = [json.loads(line) for line in (run_dir / "best_prompts.jsonl").read_text().splitlines()]
        assert [r["status"] for r in rows] == ["done", "done"]
        assert [counts for _, _, counts in TrajectoryStore(url).runs()] == [{"done": 2}]
        shown = rapo("runs", "show", str(run_dir))  # finds the store through run.json
        assert shown.returncode == 0 and "temporal" in shown.stdout
    finally:
        _postgres_local(state, "stop")
        shutil.rmtree(state, ignore_errors=True)


# -- Bad input: one line, exit 2, before any work --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "postgresql://rapo@127.0.0.1:1/rapo"], "cannot reach PostgreSQL at postgresql://rapo@127.0.0.1:1"),
        (["--store", "mysql://db/rapo"], "--store 'mysql://db/rapo': expected a postgresql:// URL"),
        (["--ray", "ray://127.0.0.1:1"], "cannot reach the Ray cluster at ray://127.0.0.1:1"),
        (["--ray", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    ],
)
def test_unreachable_services_fail_before_any_work(tmp_path, graph, args, message):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a dog\n")
    out = tmp_path / "run"
    assert_one_line_error(rapo("optimize", str(prompts), "--out", str(out), "--graph", str(graph), *args), message)
    assert not out.exists()


@pytest.mark.ray
def test_a_cluster_without_gpus_refuses_a_real_generator(ray_installed, tmp_path, graph):
    folder = save_tiny_pipeline("tiny-wan", tmp_path / "wan")
    (folder / TINY_MARKER).unlink()  # now it reads as a real model, which needs a GPU per worker
    prompts = tmp_path / "p.txt"
    prompts.write_text("a dog\n")
    out = tmp_path / "run"
    proc = rapo("optimize", str(prompts), "--out", str(out), "--graph", str(graph), "--generator", str(folder), "--ray")
    assert_one_line_error(proc, "the Ray cluster at local has no GPU; the generator needs one per worker")
    assert not out.exists()
