"""Stage 1's learned discriminators: labels from SSPO's round 0, a logistic model and a LoRA on the LLM, and the
Stage 1 choices they make."""

import json

import pytest

from rapo.agent.loop.state import Evaluation, ToolCall
from rapo.agent.runs.training_pairs import branch_pairs
from rapo.agent.runs.trajectory import TrajectoryStore
from rapo.common import ModelError
from rapo.finetune.discriminator import train_discriminator
from rapo.finetune.train import TrainConfig
from rapo.graph_db.backends import open_store
from rapo.prompts.loader import load_template
from rapo.tools.discriminator import LearnedDiscriminator, LoraDiscriminator
from rapo.tools.llm import LocalLLM, default_llm_path
from rapo.tools.retrieval import GraphLookup
from rapo.tools.stage1 import Stage1, Stage1Settings
from tests.scripted import DistillLLM
from tests.test_cli import assert_one_line_error, rapo

SUBJECTS = ["a cat", "a red car", "two horses", "a chef", "a boat", "an old man", "a child", "a bird", "a train",
            "three ducks", "a dancer", "a fox", "a tractor", "a surfer"]  # fmt: skip
LONG = "moves through a wide open landscape while the camera glides beside it in warm evening light, dust drifting"
SHORT = "in a quiet street."
ROWS = [(s, f"{s.capitalize()} {LONG}.", f"{s.capitalize()} {SHORT}", {"temporal": 0.3}, {"temporal": 0.7})
        for s in SUBJECTS]  # fmt: skip
DOG = "a dog running on the beach"
RAPO_ANSWER = "A brown dog races along the shoreline, waves breaking behind it as the camera tracks low beside it."
# Both branches as written: the discriminator's choice is the point here, not the verifier's or the facets'
SETTINGS = Stage1Settings(
    max_modifiers=1, threshold=0.3, both_branches=True, target="short", verify=False, facets=False
)


def write_round0(run_dir, rows, target="short"):
    """rows: (input, rapo text, naive text, rapo scores, naive scores); Stage 1 chose the rapo branch."""
    store = TrajectoryStore(run_dir / "trajectory.sqlite")
    store.start_run("r0", {"stage1": {"target": target}}, [r[0] for r in rows])
    for pid, (_, rapo_text, naive_text, rapo_scores, naive_scores) in enumerate(rows):
        evaluations = [Evaluation(iteration=0, index=0, prompt=rapo_text, scores=rapo_scores),
                       Evaluation(iteration=0, index=1, prompt=naive_text, scores=naive_scores)]  # fmt: skip
        call = ToolCall(tool="refine_prompt", args={}, summary=f"rapo: {rapo_text}", seconds=0.0)
        store.record("r0", pid, evaluations, [(0, call)])
        store.finish("r0", pid, evaluations[1], "budget")
    store.close()


@pytest.fixture(scope="module")
def round0_runs(tmp_path_factory, graph):
    """A real tiny-generator run (round 0 renders both branches of the distilled rewriter with one noise seed), and
    more labelled rounds written directly, where the short naive branch always made the better video."""
    work = tmp_path_factory.mktemp("round0")
    prompts = work / "prompts.txt"
    prompts.write_text(f"{DOG}\na red car driving at night\n")
    real = work / "real"
    proc = rapo("optimize", str(prompts), "--out", str(real), "--graph", str(graph), "--generator", "tiny-wan",
                "--critics", "temporal,imaging", "--max-iters", "0", "--candidates", "2", timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    synthetic = work / "synthetic"
    write_round0(synthetic, ROWS)
    return real, synthetic


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory, rapo_home):
    """A tiny random Llama with SmolLM2's tokenizer whose next-token distribution varies (unlike `save_tiny_llm`'s)."""
    from transformers import AutoTokenizer

    from tests.tiny_llm import tiny_llama

    out = tmp_path_factory.mktemp("tiny-base") / "model"
    tiny_llama(seed=0).save_pretrained(out)
    AutoTokenizer.from_pretrained(default_llm_path()).save_pretrained(out)
    return out


def stage1(graph, embedder, discriminator, llm=None):
    """Stage 1 over the test graph with the scripted distilled rewriter (or `llm`): a rapo and a naive branch."""
    llm = llm or DistillLLM([RAPO_ANSWER], ["Waves roll in."])
    return Stage1(GraphLookup(open_store(graph), embedder), llm, SETTINGS, discriminator).run(DOG)


@pytest.mark.slow
def test_the_discriminator_learns_from_round_0_and_changes_a_stage1_choice(tmp_path, graph, embedder, round0_runs):
    real, synthetic = round0_runs

    # 1. Train; every prompt of both runs is a pair or a stated skip
    disc = tmp_path / "disc"
    proc = rapo("finetune", "discriminator", "--runs", str(real), "--runs", str(synthetic), "--out", str(disc),
                "--val-fraction", "0.25", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["pairs"] + sum(report["skipped"].values()) == 2 + len(SUBJECTS)
    assert report["pairs"] >= len(SUBJECTS) and report["val"] >= 1
    assert report["val_accuracy"] is not None and report["hand_val_accuracy"] is not None
    learned = LearnedDiscriminator.load(disc)
    assert learned.embedder == embedder.model_id and len(learned.weights) == 4 + 384

    # 2. On the same two branches, the hand formula keeps the rapo branch and the learned model the naive one
    hand, tuned = stage1(graph, embedder, None), stage1(graph, embedder, learned)
    assert [c.branch for c in hand.candidates] == [c.branch for c in tuned.candidates] == ["rapo", "naive"]
    assert hand.branch == "rapo" and tuned.branch == "naive"
    assert tuned.why.startswith(f"chose naive by the learned discriminator in {disc}")
    assert tuned.models["discriminator"] == str(disc) and hand.models["discriminator"] == "hand formula"


@pytest.mark.slow
def test_a_lora_discriminator_trains_from_round_0_reloads_and_drives_stage1(
    tmp_path, graph, embedder, round0_runs, tiny_base
):
    # 1. A few steps on the tiny base (the real SmolLM2 costs 10-20 s a step here: see the next test), same runs
    disc = tmp_path / "disc"
    proc = rapo("finetune", "discriminator", "--runs", str(round0_runs[0]), "--runs", str(round0_runs[1]),
                "--out", str(disc), "--kind", "lora", "--base", str(tiny_base), "--steps", "3", "--max-len", "256",
                "--val-fraction", "0.25", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["kind"] == "lora" and report["steps"] == 3 and report["l2"] is None
    assert report["pairs"] + sum(report["skipped"].values()) == 2 + len(SUBJECTS)
    assert report["val_accuracy"] is not None and report["hand_val_accuracy"] is not None
    assert 0 < report["lora"]["examples"] <= 2 * report["train"] and report["lora"]["base"] == str(tiny_base)

    # 2. The folder is a PEFT adapter plus discriminator.json of kind "lora"; loading dispatches on the kind
    assert (disc / "adapter_config.json").is_file() and (disc / "adapter_model.safetensors").is_file()
    assert not (disc / "checkpoints").exists()
    learned = LearnedDiscriminator.load(disc)
    assert isinstance(learned, LoraDiscriminator) and learned.base_path() == tiny_base
    assert learned.template == load_template("branch_compare").id

    # 3. Stage 1 (a scripted rewriter: nothing to reuse, so the base loads) chooses by the discriminator's scores:
    # each branch's margin over the other, the same when asked directly
    hand, tuned = stage1(graph, embedder, None), stage1(graph, embedder, learned)
    assert [c.branch for c in tuned.candidates] == ["rapo", "naive"] and [c.text for c in tuned.candidates] == [
        c.text for c in hand.candidates
    ]
    direct = learned.scores(DOG, [(c.branch, c.text) for c in tuned.candidates], None, 0)
    assert [c.score for c in tuned.candidates] == [round(s, 4) for s in direct]
    assert direct[0] == pytest.approx(-direct[1])  # both orders averaged: what one gains the other loses
    assert [c.score for c in tuned.candidates] != [c.score for c in hand.candidates]
    assert tuned.branch == max(tuned.candidates, key=lambda c: (c.score, c.branch == "rapo")).branch
    assert tuned.why.startswith(f"chose {tuned.branch} by the learned discriminator in {disc} (lora)")
    assert tuned.models["discriminator"] == str(disc)


class ScriptedLocalLLM(LocalLLM):
    """A local model (loaded for real, the default without `path`) behind the scripted distilled rewriter's answers."""

    adapter_id = "mine"

    def __init__(self, path=None):
        super().__init__(path, dtype="float32")
        self.script = DistillLLM([RAPO_ANSWER], ["Waves roll in."])

    def generate(self, messages, seed, decoding):
        return self.script.generate(messages, seed, decoding)

    def generate_many(self, conversations, seeds, decoding, batch_size=16):
        return self.script.generate_many(conversations, seeds, decoding)


def test_a_lora_discriminator_reuses_the_weights_of_stage1s_llm_and_leaves_it_unchanged(
    tmp_path, graph, embedder, tiny_base
):
    import torch

    # 1. Train on the tiny base, seeded: the same run twice gives the same adapter
    synthetic = tmp_path / "synthetic"
    write_round0(synthetic, ROWS)
    config = TrainConfig(base=str(tiny_base), steps=3, batch_size=4, max_len=128)
    reports = [
        train_discriminator(branch_pairs([synthetic]), tmp_path / name, embedder, 0.25, kind="lora", lora=config)
        for name in ("disc", "again")
    ]
    assert reports[0].lora["examples"] == 2 * reports[0].train and reports[0].lora["base"] == str(tiny_base)
    assert (tmp_path / "disc" / "adapter_model.safetensors").read_bytes() == (
        tmp_path / "again" / "adapter_model.safetensors"
    ).read_bytes()
    assert reports[0].val_accuracy == reports[1].val_accuracy

    # 2. Stage 1 on a local LLM of the same base: the discriminator puts its adapter on that model's weights
    llm = ScriptedLocalLLM(tiny_base)
    llm.load()
    tokenizer, model = llm._loaded
    ids = tokenizer(DOG, return_tensors="pt")
    before = model(**ids).logits
    shared = LearnedDiscriminator.load(tmp_path / "disc")
    result = stage1(graph, embedder, shared, llm)
    assert [c.branch for c in result.candidates] == ["rapo", "naive"]
    wrapped = shared.model()[1].get_base_model()
    assert wrapped.model.embed_tokens.weight is model.model.embed_tokens.weight
    assert any("lora" in name for name, _ in wrapped.named_modules())

    # 3. ... and the LLM answers as before: no LoRA layer in its modules, the same logits
    assert not any("lora" in name for name, _ in model.named_modules())
    assert torch.equal(model(**ids).logits, before)

    # 4. Loaded on its own (no LLM to reuse), the same discriminator scores the same
    own = LearnedDiscriminator.load(tmp_path / "disc")
    texts = [(c.branch, c.text) for c in result.candidates]
    assert own.scores(DOG, texts, None, 0) == pytest.approx(shared.scores(DOG, texts, None, 0, llm), abs=1e-5)
    assert own.model()[1].get_base_model().model.embed_tokens.weight is not model.model.embed_tokens.weight
    assert [c.score for c in result.candidates] == [round(s, 4) for s in own.scores(DOG, texts, None, 0)]


@pytest.mark.slow
def test_a_lora_discriminator_on_the_default_llm_trains_and_shares_its_weights_in_stage1(tmp_path, graph, embedder):
    # 1. One step on the real SmolLM2, loaded by finetune/train.py's loader, from four written rounds (a step costs
    #    2-25 s here, the first one most; the test above trains from the real run)
    few = tmp_path / "few"
    write_round0(few, ROWS[:4])
    disc = tmp_path / "disc"
    config = TrainConfig(steps=1, batch_size=2, max_len=160)
    report = train_discriminator(branch_pairs([few]), disc, embedder, 0.25, kind="lora", lora=config)
    assert report.kind == "lora" and report.steps == 1 and report.lora["base"] is None
    learned = LearnedDiscriminator.load(disc)
    assert isinstance(learned, LoraDiscriminator) and learned.base is None and learned.base_path() == default_llm_path()

    # 2. Stage 1 on the default LLM: the discriminator scores with that model's weights under its adapter
    llm = ScriptedLocalLLM()
    result = stage1(graph, embedder, learned, llm)
    assert [c.branch for c in result.candidates] == ["rapo", "naive"]
    assert result.candidates[0].score == pytest.approx(-result.candidates[1].score, abs=2e-4)
    wrapped = learned.model()[1].get_base_model()
    assert wrapped.model.embed_tokens.weight is llm._loaded[1].model.embed_tokens.weight
    assert not any("lora" in name for name, _ in llm._loaded[1].named_modules())
    assert result.why.startswith(f"chose {result.branch} by the learned discriminator in {disc} (lora)")


def test_bad_discriminator_inputs_fail_in_one_line(tmp_path):
    with pytest.raises(ModelError, match="discriminator.json not found"):
        LearnedDiscriminator.load(tmp_path)
    assert_one_line_error(rapo("refine", "--discriminator", str(tmp_path / "none"), "a dog"), "not found")
    empty = tmp_path / "empty"
    write_round0(empty, [("a cat", "A cat runs.", "A cat runs.", {"temporal": 0.5}, {"temporal": 0.5})])
    assert_one_line_error(
        rapo("finetune", "discriminator", "--runs", str(empty), "--out", str(tmp_path / "d")),
        "no branch pairs to learn from",
    )
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "discriminator.json").write_text(json.dumps({"kind": "lora", "base": None, "template": "branch_compare@0"}))
    with pytest.raises(ModelError, match="a lora discriminator without its adapter files"):
        LearnedDiscriminator.load(lora)
    (lora / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"trained on the branch_compare@0 template.*--kind lora"):
        LearnedDiscriminator.load(lora)
    (lora / "discriminator.json").write_text(json.dumps({"kind": "forest"}))
    with pytest.raises(ModelError, match="has kind 'forest'"):
        LearnedDiscriminator.load(lora)
