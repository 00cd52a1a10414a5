"""The SSPO graph in-process: routing, stopping, the llm controller, failure isolation."""

from types import SimpleNamespace

import pytest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from langgraph.checkpoint.memory import InMemorySaver

from rapo.agent.loop import nodes
from rapo.agent.loop.context import Context, SSPOConfig
from rapo.agent.loop.controllers import LLMController, PolicyController
from rapo.agent.loop.graph import after_decide, builder
from rapo.agent.loop.state import Evaluation, SSPOState
from rapo.agent.runs.optimize import PromptItem, open_run, optimize
from rapo.graph_db.backends import open_store
from rapo.tools.critics.registry import make_critic
from rapo.tools.generator import GenerationParams, VideoGenerator
from rapo.tools.lc_tools import critic_tool, generate_video_tool, graph_lookup_tool, refine_prompt_tool
from rapo.tools.retrieval import GraphLookup
from rapo.tools.revise import PromptReviser
from rapo.tools.stage1 import Stage1, Stage1Settings
from tests.graphs import build_small_graph
from tests.test_stage1 import ScriptedLLM

ANSWERS = {
    "Add the given detail": ["a dog running on the beach, running along the shoreline"],
    "style of video captions": ["A dog is running on the beach, running along the shoreline at golden hour."],
    "improve short": ["A brown dog running on the wide beach as small waves roll in."],
    "earlier attempts": [  # the reviser: a new text per call
        "a dog running fast on the beach, splashing water, lively motion",
        "a dog running on the beach in bright sunlight, camera tracking",
        "a happy dog running on the beach chasing a red ball",
        "a dog running on the beach at sunset, slow motion",
    ],
}


class ToolCallingFake(FakeMessagesListChatModel):
    """LangChain's fake chat model, scripted with tool calls; binding tools changes nothing."""

    def bind_tools(self, tools, **kwargs):
        return self


@pytest.fixture
def context(tmp_path, embedder):
    def make(config: SSPOConfig, controller=None, generator=None, llm=None, critics=("temporal", "imaging")) -> Context:
        llm = llm or ScriptedLLM(ANSWERS)
        lookup = GraphLookup(open_store(build_small_graph(tmp_path / "g.sqlite", embedder)), embedder)
        stage1 = Stage1(lookup, llm, Stage1Settings(threshold=0.3))
        generator = generator or VideoGenerator("tiny-wan")
        critics = [make_critic(name) for name in critics]
        tools = [
            refine_prompt_tool(stage1),
            graph_lookup_tool(lookup),
            generate_video_tool(generator, config.params, tmp_path),
            *(critic_tool(c) for c in critics),
        ]
        return Context(
            config=config,
            tools={t.name: t for t in tools},
            critics=[c.name for c in critics],
            reviser=PromptReviser(llm),
            controller=controller or PolicyController(),
            run_dir=tmp_path,
        )

    return make


def run(ctx: Context, prompt: str = "a dog running on the beach") -> dict:
    graph = builder.compile(checkpointer=InMemorySaver())
    return graph.invoke(SSPOState(input=prompt), {"configurable": {"thread_id": "t"}}, context=ctx)


def test_prompt_metadata_reaches_the_physics_critic_and_the_reviser(context):
    """A prompt file's physical law is handed to the critics (recorded in the call) and shown to the reviser."""
    llm = ScriptedLLM(ANSWERS)
    ctx = context(SSPOConfig(max_iters=1, candidates=1), llm=llm, critics=("temporal", "physics"))
    meta = {"physical_laws": "Due to gravity, the sand thrown up by the paws falls back down.", "dimension": ["x"]}
    graph = builder.compile(checkpointer=InMemorySaver())
    state = SSPOState(input="a dog running on the beach", meta=meta)
    out = graph.invoke(state, {"configurable": {"thread_id": "t"}}, context=ctx)
    judged = [c for c in out["tool_calls"] if c.tool == "critic_physics"]
    assert judged and all(c.ok and c.args["meta"] == meta for c in judged)
    assert all(c.args["prompt"] == "a dog running on the beach" for c in judged)  # the user's prompt, every round
    assert all(meta["physical_laws"] in e.feedback["physics"] for e in out["evaluated"])
    revisions = [m for m in llm.requests if "earlier attempts" in m[0]["content"]]
    assert revisions and all(
        "The video must show: dimension: x; physical laws: Due to gravity" in m[-1]["content"] for m in revisions
    )


def test_tournament_overrules_the_mean_rank_only_when_the_judge_agrees_in_both_orders(context):
    import json
    from pathlib import Path

    from langchain_core.tools import StructuredTool

    from rapo.agent.loop.selection import rank_order
    from rapo.tools.lc_tools import CompareArgs

    ctx = context(SSPOConfig(max_iters=2, candidates=2))
    state = SSPOState.model_validate(run(ctx))
    ranked = []
    for e in rank_order(state.evaluated):
        if e.video and e.prompt not in ranked:
            ranked.append(e.prompt)
    assert len(ranked) >= 4
    underdog = ranked[3]  # last of the four in the tournament

    def judged(prefers):
        def compare(video_a: str, video_b: str, prompt: str) -> dict:
            a, b = (json.loads(Path(v).with_suffix(".json").read_text())["prompt"] for v in (video_a, video_b))
            asked.append((a, b, prompt))
            return {"winner": prefers(a, b), "reason": "scripted"}

        return StructuredTool.from_function(func=compare, name="compare_videos", args_schema=CompareArgs)

    ctx.config = ctx.config.model_copy(update={"select": "tournament"})
    asked = []
    ctx.tools["compare_videos"] = judged(lambda a, b: "A" if a == underdog else "B" if b == underdog else "A")
    update = nodes.finalize(state, SimpleNamespace(context=ctx))
    assert update["best"].prompt == underdog
    assert len(update["tool_calls"]) == len(asked) == 6  # two semi-finals and a final, each in both orders
    assert {p for _, _, p in asked} == {"a dog running on the beach"}  # judged against the user's prompt
    assert {(a, b) for a, b, _ in asked[:2]} == {(ranked[0], underdog), (underdog, ranked[0])}
    # A judge that always answers "A" splits every pair: the mean-rank order stands
    ctx.tools["compare_videos"] = judged(lambda a, b: "A")
    assert nodes.finalize(state, SimpleNamespace(context=ctx))["best"].prompt == ranked[0]


def test_build_context_wires_the_tournament_judge_only_with_a_vlm(tmp_path, embedder):
    from rapo.agent.runs.run_spec import RunSpec, build_context
    from rapo.common import RapoError

    stage1 = Stage1(GraphLookup(open_store(build_small_graph(tmp_path / "g.sqlite", embedder)), embedder),
                    ScriptedLLM(ANSWERS), Stage1Settings())  # fmt: skip
    spec = RunSpec(generator="tiny-wan", critics=["temporal"], config=SSPOConfig(select="tournament"), run_dir=tmp_path,
                   critic_options={"vlm": {"base_url": "http://127.0.0.1:9/v1", "model": "judge"}})  # fmt: skip
    assert "compare_videos" in build_context(spec, stage1=stage1).tools  # the judge connects on first use
    with pytest.raises(RapoError, match="--select tournament"):
        build_context(spec.model_copy(update={"critic_options": {}}), stage1=stage1)
    assert "compare_videos" not in build_context(spec.model_copy(update={"config": SSPOConfig()}), stage1=stage1).tools


def test_router_refuses_an_undecided_state():
    with pytest.raises(ValueError, match="next_action=None"):
        after_decide(SSPOState(input="x"))


def test_decide_stopping_rules(context):
    scored = Evaluation(iteration=0, index=0, prompt="p", video="v.mp4", scores={"temporal": 0.9, "imaging": 0.4})
    ctx = context(SSPOConfig(max_iters=2, max_videos=4, thresholds={"temporal": 0.8}))
    runtime = SimpleNamespace(context=ctx)
    state = SSPOState(input="x", evaluated=[scored], videos_made=2)
    assert nodes.decide(state, runtime)["stop_reason"] == "every threshold met"
    ctx.config.thresholds = {"imaging": 0.5}
    assert nodes.decide(state, runtime) == {"next_action": "revise", "instructions": "raise imaging (now 0.40)"}
    assert nodes.decide(state.model_copy(update={"iteration": 2}), runtime)["stop_reason"] == "2 revision rounds done"
    assert nodes.decide(state.model_copy(update={"videos_made": 4}), runtime)["stop_reason"] == (
        "video budget of 4 spent"
    )
    ctx.config.max_seconds = 1.0
    assert nodes.decide(state.model_copy(update={"started_at": 1.0}), runtime)["stop_reason"].startswith("time budget")


def test_policy_loop_keeps_the_best_and_records_every_tool_call(context):
    ctx = context(SSPOConfig(max_iters=2, candidates=2, max_videos=20, params=GenerationParams()))
    final = run(ctx)
    assert final["stop_reason"] == "2 revision rounds done"
    assert [e.iteration for e in final["evaluated"]] == [0, 0, 1, 1, 2, 2]
    best = final["best"]
    assert best.scores and best in final["evaluated"]
    # Lowest mean rank: so no candidate beats the best on every metric.
    others = [e for e in final["evaluated"] if e is not best]
    assert not any(all(e.scores[m] > best.scores[m] for m in best.scores) for e in others)
    tools = [c.tool for c in final["tool_calls"]]
    assert tools[0] == "refine_prompt" and tools.count("generate_video") == 6 and "revise_prompt" in tools
    assert tools.count("critic_temporal") == tools.count("critic_imaging") == 6
    # Every critic judged the video against the user's prompt, not against the candidate that made it.
    judged = {c.args["prompt"] for c in final["tool_calls"] if c.tool.startswith("critic_")}
    assert judged == {final["input"]} and len({e.prompt for e in final["evaluated"]}) > 1
    assert all(c.seconds >= 0 and c.summary for c in final["tool_calls"])


def test_llm_controller_follows_scripted_tool_calls(context):
    model = ToolCallingFake(
        responses=[
            AIMessage("", tool_calls=[{"name": "graph_lookup", "args": {"prompt": "dog beach"}, "id": "1"}]),
            AIMessage("", tool_calls=[{"name": "revise", "args": {"instructions": "more motion"}, "id": "2"}]),
            AIMessage("", tool_calls=[{"name": "finish", "args": {"reason": "good enough"}, "id": "3"}]),
        ]
    )
    controller = LLMController(model, allowed=["graph_lookup", "revise", "finish"])
    final = run(context(SSPOConfig(max_iters=5, candidates=1), controller=controller))
    tools = [c.tool for c in final["tool_calls"]]
    assert tools.index("graph_lookup") < tools.index("revise") < tools.index("revise_prompt") < tools.index("finish")
    assert final["stop_reason"] == "controller: good enough"
    assert {e.iteration for e in final["evaluated"]} == {0, 1}
    revise_call = next(c for c in final["tool_calls"] if c.tool == "revise_prompt")
    assert revise_call.args["instructions"] == "more motion"


def test_llm_controller_off_the_allow_list_falls_back_to_the_policy(context):
    model = ToolCallingFake(
        responses=[AIMessage("", tool_calls=[{"name": "generate_video", "args": {"prompt": "x"}, "id": "1"}])] * 3
    )
    controller = LLMController(model, allowed=["revise", "finish"])
    final = run(context(SSPOConfig(max_iters=1, candidates=1), controller=controller))
    notes = [c.summary for c in final["tool_calls"] if c.tool == "controller"]
    assert notes == ["the model called 'generate_video', which is not allowed; the policy decided"]
    assert final["stop_reason"] == "1 revision rounds done"


def test_llm_controller_whose_model_fails_falls_back_to_the_policy(context):
    class Unreachable(ToolCallingFake):
        def invoke(self, *args, **kwargs):
            raise ConnectionError("server went away")

    controller = LLMController(Unreachable(responses=[]), allowed=["revise", "finish"])
    final = run(context(SSPOConfig(max_iters=1, candidates=1), controller=controller))
    notes = [c.summary for c in final["tool_calls"] if c.tool == "controller"]
    assert notes == ["the model call failed: ConnectionError: server went away; the policy decided"]
    assert final["stop_reason"] == "1 revision rounds done"


def test_a_failing_generator_is_an_observation(context):
    class Broken(VideoGenerator):
        def generate(self, prompt, seed, params, out_dir):
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")

    final = run(context(SSPOConfig(max_iters=1, candidates=1), generator=Broken("tiny-wan")))
    assert final["best"] is None and final["stop_reason"] == "no video could be generated"
    failed = [c for c in final["tool_calls"] if not c.ok]
    assert failed and failed[0].summary.startswith("RuntimeError: CUDA out of memory")


def test_one_failing_prompt_does_not_stop_the_batch(context, tmp_path):
    class FailsOnCats(VideoGenerator):
        def generate(self, prompt, seed, params, out_dir):
            if "cat" in prompt:
                raise RuntimeError("CUDA out of memory")
            return super().generate(prompt, seed, params, out_dir)

    ctx = context(SSPOConfig(max_iters=0, candidates=1), generator=FailsOnCats("tiny-wan"))
    texts = ["a dog running on the beach", "a cat on a sofa", "a chef chopping onions in a kitchen"]
    prompts = [PromptItem(text=t) for t in texts]
    info = open_run(tmp_path / "run", tmp_path / "p.txt", prompts, {}, resume=False)
    ctx.run_dir = tmp_path
    rows = optimize(prompts, info, ctx)
    assert [r["status"] for r in rows] == ["done", "failed", "done"]
    assert "no video could be generated: RuntimeError: CUDA out of memory" in rows[1]["error"]
    assert rows[0]["best_prompt"] and rows[2]["best_prompt"]
