"""`rapo optimize --overlap`: prompts side by side in threads, one video at a time, the same results as in a row."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from langchain_core.tools import StructuredTool

from bench.sspo import StandInGenerator, StandInReviser
from rapo.agent.loop.context import SSPOConfig
from rapo.agent.loop.graph import builder
from rapo.agent.runs.optimize import PromptItem, checkpointer, open_run, optimize, run_prompt
from rapo.agent.runs.run_spec import RunSpec, build_context
from rapo.agent.runs.trajectory import TrajectoryStore
from rapo.tools.stage1 import Stage1Settings

TEXTS = ["a dog running on the beach", "a chef chopping onions in a kitchen", "a red car driving at night"]


def _timed(tool, spans: list[tuple[float, float]]):
    """`tool`, recording each call's (start, end)."""

    def run(**kwargs):
        started = time.perf_counter()
        try:
            return tool.invoke(kwargs)
        finally:
            spans.append((started, time.perf_counter()))

    return StructuredTool.from_function(func=run, name=tool.name, description=tool.description,
                                        args_schema=tool.args_schema)  # fmt: skip


def _batch(run_dir: Path, overlap: int, graph, embedder, tiny_llm) -> tuple[list[dict], dict, list, list]:
    """The batch at `overlap`, 0.4 s a stand-in render: rows, each prompt's evaluations, pipeline and critic spans."""
    spec = RunSpec(
        generator="tiny-wan", critics=["temporal", "imaging"], config=SSPOConfig(max_iters=1, candidates=2),
        graph=str(graph), llm=str(tiny_llm), stage1=Stage1Settings(target="short", both_branches=True),
        run_dir=run_dir,
    )  # fmt: skip
    generator = StandInGenerator(0.4)
    ctx = build_context(spec, generator=generator, embedder=embedder)
    ctx.reviser = StandInReviser(0.05)  # accepted candidates, so every prompt has a revision round
    critic_spans: list[tuple[float, float]] = []
    for name in ("critic_temporal", "critic_imaging"):
        ctx.tools[name] = _timed(ctx.tools[name], critic_spans)
    prompts = [PromptItem(text=t) for t in TEXTS]
    rows = optimize(prompts, open_run(run_dir, Path("p.txt"), prompts, {}, resume=False), ctx, overlap=overlap)
    store = TrajectoryStore(run_dir / "trajectory.sqlite")
    run_id = store.runs()[0][0]
    evaluations = {
        r["prompt_id"]: [(e.iteration, e.index, e.prompt, e.video_key, e.scores) for e in store.evaluations(run_id, i)]
        for i, r in enumerate(rows)
    }
    store.close()
    return rows, evaluations, sorted(generator.pipeline.calls), critic_spans


def _inside(span: tuple[float, float], spans: list[tuple[float, float]]) -> bool:
    return any(start < span[0] and span[1] < end for start, end in spans)


def test_critics_run_while_another_prompt_renders_and_the_results_do_not_change(tmp_path, graph, embedder, tiny_llm):
    one = _batch(tmp_path / "one", 1, graph, embedder, tiny_llm)
    two = _batch(tmp_path / "two", 2, graph, embedder, tiny_llm)
    assert len(two[2]) == len(one[2]) >= len(TEXTS) * 3  # round 0: Stage 1's candidates; round 1: two revisions
    for rows, _, calls, _ in (one, two):
        assert [r["status"] for r in rows] == ["done"] * len(TEXTS)
        # one pipeline call at a time: each starts after the one before ended
        assert all(later[0] >= earlier[1] for earlier, later in zip(calls, calls[1:], strict=False))
    # A prompt critiques only after its own renders, so a critic call inside a pipeline call is another prompt's.
    assert not any(_inside(span, one[2]) for span in one[3])
    assert any(_inside(span, two[2]) for span in two[3])
    keep = ("prompt_id", "status", "best_prompt", "best_scores", "best_video", "stop_reason")
    assert [{k: r[k] for k in keep} for r in two[0]] == [{k: r[k] for k in keep} for r in one[0]]
    assert two[1] == one[1]  # every candidate, video and score of every round


def test_the_local_llm_samples_one_chat_at_a_time_whatever_the_threads(tmp_path, tiny_llm, monkeypatch):
    """Seeding torch's global generator and sampling is one step: threads never interleave inside it."""
    from transformers import AutoTokenizer

    from rapo.tools.llm import Decoding, LocalLLM
    from tests.tiny_llm import tiny_llama

    folder = tmp_path / "talks"  # random weights that do not end at once: long, seed-dependent answers
    tiny_llama(seed=1).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_llm).save_pretrained(folder)
    models = [LocalLLM(folder, dtype="float32"), LocalLLM(folder, dtype="float32")]  # the lock is process-wide
    decoding = Decoding(max_new_tokens=16, temperature=1.0, top_p=1.0)
    chats = [[{"role": "user", "content": f"Describe scene {i}."}] for i in range(8)]
    alone = [models[i % 2].generate(chat, i, decoding).text for i, chat in enumerate(chats)]

    spans: list[tuple[float, float]] = []
    locked = LocalLLM._generate_locked

    def timed(self, *args):
        started = time.perf_counter()
        time.sleep(0.05)  # without the lock, the four threads released together would all be in here at once
        try:
            return locked(self, *args)
        finally:
            spans.append((started, time.perf_counter()))

    monkeypatch.setattr(LocalLLM, "_generate_locked", timed)
    start = threading.Barrier(4)

    def answer(i: int) -> str:
        if i < 4:
            start.wait()
        return models[i % 2].generate(chats[i], i, decoding).text

    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(answer, range(8)))
    spans.sort()
    assert len(spans) == 8 and all(b[0] >= a[1] for a, b in zip(spans, spans[1:], strict=False))
    assert len(set(alone)) == len(alone) and together == alone


def test_a_stopped_prompt_is_left_running_and_resumes(tmp_path, graph, embedder, tiny_llm):
    spec = RunSpec(
        generator="tiny-wan", critics=["temporal"], config=SSPOConfig(max_iters=0, candidates=1), graph=str(graph),
        llm=str(tiny_llm), stage1=Stage1Settings(target="short", both_branches=True), run_dir=tmp_path,
    )  # fmt: skip
    ctx = build_context(spec, embedder=embedder)
    prompts = [PromptItem(text=TEXTS[0])]
    info = open_run(tmp_path, Path("p.txt"), prompts, {}, resume=False)
    store = TrajectoryStore(tmp_path / "trajectory.sqlite")
    store.start_run(info.run_id, {}, [TEXTS[0]])
    graph_ = builder.compile(checkpointer=checkpointer(tmp_path))
    stop = threading.Event()
    stop.set()  # Ctrl-C came: the prompt stops after its first node
    run_prompt(graph_, store, info.run_id, 0, prompts[0], ctx, lambda _: None, stop=stop)
    assert store.prompts(info.run_id)[0].status == "running"
    assert not (tmp_path / "videos" / "generation.log").exists()  # stopped after Stage 1, before any render
    store.close()
    [row] = optimize(prompts, info, ctx, overlap=2)  # as `--resume` does
    assert row["status"] == "done" and row["best_video"]
