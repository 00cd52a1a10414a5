"""Stage 1's learned discriminator: labels from SSPO's round 0, a pairwise model, and a Stage 1 choice it changes."""

import json

import pytest

from agent.loop.state import Evaluation, ToolCall
from agent.runs.trajectory import TrajectoryStore
from graph_db.backends import open_store
from rapo_common import ModelError
from tests.scripted import DistillLLM
from tests.test_cli import assert_one_line_error, rapo
from tools.discriminator import LearnedDiscriminator
from tools.retrieval import GraphLookup
from tools.stage1 import Stage1, Stage1Settings

SUBJECTS = ["a cat", "a red car", "two horses", "a chef", "a boat", "an old man", "a child", "a bird", "a train",
            "three ducks", "a dancer", "a fox", "a tractor", "a surfer"]  # fmt: skip
LONG = "moves through a wide open landscape while the camera glides beside it in warm evening light, dust drifting"
SHORT = "in a quiet street."


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


@pytest.mark.slow
def test_the_discriminator_learns_from_round_0_and_changes_a_stage1_choice(tmp_path, graph, embedder):
    # 1. A real tiny-generator run: round 0 renders both branches of the distilled rewriter with one noise seed
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a dog running on the beach\na red car driving at night\n")
    real = tmp_path / "real"
    proc = rapo("optimize", str(prompts), "--out", str(real), "--graph", str(graph), "--generator", "tiny-wan",
                "--critics", "temporal,imaging", "--max-iters", "0", "--candidates", "2", timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # 2. More labelled rounds, written directly: here the short naive branch always made the better video
    synthetic = tmp_path / "synthetic"
    rows = [(s, f"{s.capitalize()} {LONG}.", f"{s.capitalize()} {SHORT}", {"temporal": 0.3}, {"temporal": 0.7})
            for s in SUBJECTS]  # fmt: skip
    write_round0(synthetic, rows)

    # 3. Train; every prompt of both runs is a pair or a stated skip
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

    # 4. On the same two branches, the hand formula keeps the rapo branch and the learned model the naive one
    lookup = GraphLookup(open_store(graph), embedder)
    rapo_answer = "A brown dog races along the shoreline, waves breaking behind it as the camera tracks low beside it."
    settings = Stage1Settings(max_modifiers=1, threshold=0.3, both_branches=True, target="short")

    def stage1(discriminator):
        llm = DistillLLM([rapo_answer], ["Waves roll in."])
        return Stage1(lookup, llm, settings, discriminator).run("a dog running on the beach")

    hand, tuned = stage1(None), stage1(learned)
    assert [c.branch for c in hand.candidates] == [c.branch for c in tuned.candidates] == ["rapo", "naive"]
    assert hand.branch == "rapo" and tuned.branch == "naive"
    assert tuned.why.startswith(f"chose naive by the learned discriminator in {disc}")
    assert tuned.models["discriminator"] == str(disc) and hand.models["discriminator"] == "hand formula"


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
