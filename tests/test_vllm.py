"""The served-model backend against a real vLLM server (scripts/test starts one with scripts/vllm-local)."""

import json
import os

import pytest

from rapo.agent.loop.controllers import decision_tools
from rapo.agent.runs.trajectory import TrajectoryStore
from rapo.tools.llm import Decoding
from rapo.tools.llm_openai import Endpoint, OpenAILLM
from tests.graphs import build_small_graph
from tests.test_cli import assert_one_line_error, rapo

GREEDY = Decoding(max_new_tokens=32, temperature=0.0, repetition_penalty=1.0, no_repeat_ngram_size=0)
ASK = [{"role": "user", "content": "Rewrite as a detailed video caption: a dog running on the beach"}]


@pytest.fixture(scope="module")
def graph(tmp_path_factory, embedder):
    return build_small_graph(tmp_path_factory.mktemp("g") / "small.sqlite", embedder)


# -- without a server ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "url", "model"),
    [
        ("openai:http://127.0.0.1:8000/v1#SmolLM2", "http://127.0.0.1:8000/v1", "SmolLM2"),
        ("openai:https://llm.example/v1/", "https://llm.example/v1", None),
        ("openai:http://h:1/v1#org/model-7b", "http://h:1/v1", "org/model-7b"),
    ],
)
def test_endpoint_spec(spec, url, model):
    assert Endpoint.parse(spec) == Endpoint(base_url=url, model=model)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("openai:ftp://host/v1", "expected openai:http://HOST:PORT/v1[#MODEL]"),
        ("openai:http://127.0.0.1:9/v1#m", "LLM endpoint http://127.0.0.1:9/v1 cannot be reached"),
    ],
)
def test_bad_endpoint_fails_at_start_up(spec, message):
    assert_one_line_error(rapo("refine", "--llm", spec, "a dog running"), message)


# -- against the server -------------------------------------------------------------------------------------------


@pytest.mark.vllm
def test_refine_through_vllm(vllm_spec, graph):
    proc = rapo("refine", "--llm", vllm_spec, "--graph", str(graph), "--json", "a dog running on the beach")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    # Every answer the server gave went through the guards: kept as a candidate's step, or rejected with a reason.
    answered = [c for c in result["candidates"] if c["step"] != "input"] + result["rejected"]
    assert answered and all(r["reason"] for r in result["rejected"])
    assert result["models"]["llm"] == vllm_spec and result["models"]["adapter"] is None


@pytest.mark.vllm
def test_prompt_list_is_sent_concurrently_and_written_in_order(vllm_spec, graph, tmp_path):
    prompts = [f"a {animal} running on the beach" for animal in ("dog", "cat", "horse", "fox", "goat", "child")]
    (tmp_path / "p.txt").write_text("\n".join(prompts) + "\n")
    out = tmp_path / "out.jsonl"
    proc = rapo("refine", "--llm", vllm_spec, "--graph", str(graph), "--file", str(tmp_path / "p.txt"), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5, 6] and [r["input"] for r in rows] == prompts

    llm = OpenAILLM(vllm_spec, concurrency=4)
    asks = [[{"role": "user", "content": f"Describe {p} as a video caption."}] for p in prompts]
    together = llm.generate_many(asks, [0] * len(asks), GREEDY)
    assert llm.peak_in_flight > 1  # the requests overlapped
    alone = [llm.generate(a, 0, GREEDY).text for a in asks]
    # In input order: each answer shares its longest opening with the answer its own chat gets alone (batched
    # arithmetic may part them later on).
    for i, answer in enumerate(together):
        shared = [len(os.path.commonprefix([answer.text, other])) for other in alone]
        assert shared.index(max(shared)) == i and shared.count(max(shared)) == 1, (answer.text, alone)


@pytest.mark.vllm
def test_lora_adapter_selected_by_name_changes_the_output(vllm_spec, vllm_lora, graph):
    base = OpenAILLM(vllm_spec).generate(ASK, 0, GREEDY)
    tuned_llm = OpenAILLM(vllm_spec, adapter=vllm_lora)
    tuned = tuned_llm.generate(ASK, 0, GREEDY)
    assert base.text and tuned.text and tuned.text != base.text
    assert tuned_llm.adapter_id == vllm_lora

    # With an adapter, Stage 1 is the distilled rewriter: the server continues the forced answer start (vLLM's
    # continue_final_message), so every candidate and every answer the guards refused starts with the user's prompt.
    proc = rapo("refine", "--llm", vllm_spec, "--adapter", vllm_lora, "--graph", str(graph), "--json", "a red car")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["models"]["adapter"] == vllm_lora and result["models"]["templates"] == ["distill_rewrite@2"]
    answers = [r["text"] for r in result["rejected"] if r["step"] != "verify"]  # not the verifier's single sentences
    texts = [c["text"] for c in result["candidates"]] + answers
    assert all(t.lower().startswith("a red car") for t in texts)


@pytest.mark.vllm
def test_model_chooses_a_tool_when_one_is_required(vllm_spec):
    chat = OpenAILLM(vllm_spec).chat_model().bind_tools(decision_tools(), tool_choice="any", strict=True)
    reply = chat.invoke("Round 1 of 4. Scores: flow 0.21, temporal 0.35. Call revise or finish.")
    assert len(reply.tool_calls) >= 1
    call = reply.tool_calls[0]
    assert call["name"] in {"revise", "finish"} and isinstance(call["args"], dict)


@pytest.mark.vllm
def test_llm_controller_drives_a_run_through_vllm(vllm_spec, graph, tmp_path):
    (tmp_path / "p.txt").write_text("a dog running on the beach\n")
    run_dir = tmp_path / "run"
    proc = rapo("optimize", str(tmp_path / "p.txt"), "--out", str(run_dir), "--graph", str(graph),
                "--llm", vllm_spec, "--controller", "llm", "--critics", "temporal,imaging",
                "--max-iters", "1", "--candidates", "1")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    store = TrajectoryStore(run_dir / "trajectory.sqlite")
    run_id = store.runs()[0][0]
    assert store.run_config(run_id)["controller"] == "llm"
    calls = store.tool_calls(run_id, 0)
    decisions = [c for c in calls if c.tool in ("revise", "finish", "graph_lookup")]
    assert decisions, [c.tool for c in calls]  # the model chose, not the fallback policy
    assert all(c.ok for c in decisions)


@pytest.mark.vllm
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--llm", "{spec}x"], "the server does not serve"),
        (["--llm", "{spec}", "--adapter", "no-such-lora"], "--adapter 'no-such-lora': http://127.0.0.1"),
    ],
)
def test_unknown_model_or_adapter_fails_at_start_up(vllm_spec, args, message):
    args = [a.format(spec=vllm_spec) for a in args]
    assert_one_line_error(rapo("refine", *args, "a dog running"), message)
