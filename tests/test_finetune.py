"""Stage 3: trajectories → SFT pairs → LoRA adapter → a rewriter that `rapo refine --adapter` uses."""

import json

import pytest

from rapo.agent.loop.state import Evaluation
from rapo.agent.runs.training_pairs import pairs_from_runs
from rapo.agent.runs.trajectory import TrajectoryStore
from rapo.common import RapoError
from rapo.finetune.dataset import build_dataset, read_pairs
from rapo.finetune.evaluate import lcs_length, rouge_l
from tests.graphs import build_small_graph
from tests.test_cli import assert_one_line_error, rapo

STYLE = "Soft golden light, the camera pans slowly."


def write_run(run_dir, rows, run_id="r1"):
    """rows: (input, first prompt, first scores, best prompt, best scores) per prompt; best None = failed."""
    store = TrajectoryStore(run_dir / "trajectory.sqlite")
    store.start_run(run_id, {"test": True}, [r[0] for r in rows])
    for pid, (_, first, first_scores, best, best_scores) in enumerate(rows):
        evals = [Evaluation(iteration=0, index=0, prompt=first, scores=first_scores)]
        if best is None:
            store.record(run_id, pid, evals, [])
            store.set_status(run_id, pid, "failed", "boom")
            continue
        evals.append(Evaluation(iteration=1, index=0, prompt=best, scores=best_scores))
        store.record(run_id, pid, evals, [])
        store.finish(run_id, pid, evals[-1], "budget")
    store.close()


def test_pairs_keep_only_gains_above_margin_with_provenance(tmp_path):
    write_run(tmp_path / "a", [
        ("a dog on a beach", "A dog on a beach.", {"flow": 0.4, "imaging": 0.4},
         "A dog runs on a beach.", {"flow": 0.6, "imaging": 0.5}),
        ("a red car", "A red car.", {"flow": 0.5}, "A red car drives.", {"flow": 0.505}),  # gain 0.005 < margin
        ("a cat", "A cat.", {"flow": 0.5}, "A cat.", {"flow": 0.5}),  # best is the first candidate
        ("a boat", "A boat.", {"flow": 0.5}, None, None),  # failed
    ])  # fmt: skip
    summary = build_dataset(tmp_path / "data", pairs_from_runs([tmp_path / "a"], margin=0.05), val_fraction=0.0)
    assert summary.counts == {"train": 1, "val": 0}
    assert summary.skipped == {"below margin": 2, "status failed": 1}
    (pair,) = read_pairs(tmp_path / "data", "train")
    assert (pair.input, pair.target, pair.gain) == ("a dog on a beach", "A dog runs on a beach.", pytest.approx(0.15))
    assert pair.source["run_id"] == "r1" and pair.source["prompt_id"] == 0
    assert pair.source["first_prompt"] == "A dog on a beach." and pair.source["best_scores"]["flow"] == 0.6


def test_dedupe_keeps_largest_gain_and_split_is_by_prompt(tmp_path):
    rows = [(f"prompt number {i}", f"P{i}.", {"m": 0.2}, f"Prompt number {i}, better.", {"m": 0.5}) for i in range(20)]
    write_run(tmp_path / "a", rows)
    # The same prompts again in a second run, with a bigger gain for prompt 0 (spacing and case differ)
    better = ("Prompt  number 0", "P0.", {"m": 0.1}, "Prompt number 0, best.", {"m": 0.9})
    write_run(tmp_path / "b", [better] + rows[1:], "r2")
    summary = build_dataset(
        tmp_path / "data", pairs_from_runs([tmp_path / "a", tmp_path / "b"]), val_fraction=0.2, seed=3
    )
    assert summary.counts == {"train": 16, "val": 4} and summary.skipped == {"duplicate prompt": 20}
    train, val = read_pairs(tmp_path / "data", "train"), read_pairs(tmp_path / "data", "val")
    assert not {p.input.lower() for p in train} & {p.input.lower() for p in val}
    best0 = next(p for p in train + val if p.input.lower().split() == ["prompt", "number", "0"])
    assert best0.target == "Prompt number 0, best." and best0.source["run_dir"].endswith("b")
    # The same seed gives the same split
    again = build_dataset(
        tmp_path / "data2", pairs_from_runs([tmp_path / "a", tmp_path / "b"]), val_fraction=0.2, seed=3
    )
    assert again.counts == summary.counts
    assert [p.input for p in read_pairs(tmp_path / "data2", "val")] == [p.input for p in val]


def test_pairs_files(tmp_path):
    short, long = tmp_path / "s.txt", tmp_path / "l.txt"
    short.write_text("a dog\na cat\n\na bird\na red fox\n")
    long.write_text("A dog runs.\nA cat sleeps.\n\nA bird flies.\nA wolf howls.")  # no final newline
    summary = build_dataset(tmp_path / "data", pairs=(short, long), val_fraction=0.3)
    assert summary.counts == {"train": 2, "val": 1}
    assert summary.skipped == {"blank line": 1, "target drops input words": 1}
    assert read_pairs(tmp_path / "data", "val")[0].source["short"] == str(short)
    long.write_text("A dog runs.\n")  # now 1 line against 5
    with pytest.raises(RapoError, match="has 5 lines but .* has 1"):
        build_dataset(tmp_path / "data3", pairs=(short, long))


def test_rouge_l():
    assert lcs_length("a b c d".split(), "a c d e".split()) == 3
    assert rouge_l("A dog runs", "a dog runs") == 1.0
    assert rouge_l("cat", "dog") == 0.0
    assert rouge_l("a dog runs fast", "a dog") == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_bad_datasets_and_models_fail_in_one_line(tmp_path):
    empty = tmp_path / "empty"
    write_run(empty, [("a cat", "A cat.", {"flow": 0.5}, "A cat.", {"flow": 0.5})])
    out = tmp_path / "data"
    assert_one_line_error(rapo("finetune", "dataset", "--runs", str(empty), "--out", str(out)), "no training pairs")
    assert not out.exists()
    assert_one_line_error(
        rapo("finetune", "dataset", "--runs", str(tmp_path / "nowhere"), "--out", str(out)), "not a run dir"
    )
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "train.jsonl").write_text('{"input": "a dog", "target": "A dog."}\n{"input": "a ca\n')
    assert_one_line_error(rapo("finetune", "train", "--data", str(corrupt), "--out", str(tmp_path / "ad")),
                          f"{corrupt / 'train.jsonl'}:2: not a training pair")  # fmt: skip
    (corrupt / "train.jsonl").write_text("\n")
    assert_one_line_error(rapo("finetune", "train", "--data", str(corrupt), "--out", str(tmp_path / "ad")),
                          "no pairs in the train split")  # fmt: skip
    (corrupt / "train.jsonl").write_text('{"input": "a dog", "target": "A dog."}\n')
    missing = tmp_path / "no-model"
    assert_one_line_error(
        rapo("finetune", "train", "--data", str(corrupt), "--out", str(tmp_path / "ad"), "--base", str(missing)),
        f"base model not found: {missing}",
    )
    assert not (tmp_path / "ad").exists()
    # An adapter recorded as trained on a base of another shape
    adapter = tmp_path / "other"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "rapo_train.json").write_text(json.dumps({"base_shape": {"model_type": "llama", "hidden_size": 64}}))
    (corrupt / "val.jsonl").write_text('{"input": "a dog", "target": "A dog."}\n')
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 576}))
    assert_one_line_error(
        rapo("finetune", "eval", "--adapter", str(adapter), "--data", str(corrupt), "--base", str(base)),
        "was trained on a base of shape",
    )
    assert_one_line_error(rapo("refine", "--adapter", str(tmp_path / "nope"), "a dog"), "adapter not found")
    prompts = tmp_path / "p.txt"
    prompts.write_text("a dog\n")
    run = tmp_path / "run"
    assert_one_line_error(
        rapo("optimize", str(prompts), "--out", str(run), "--adapter", str(tmp_path / "nope")), "adapter not found"
    )
    assert not run.exists()


@pytest.mark.slow
def test_adapter_of_another_model_is_refused(tmp_path, llm):
    """A PEFT adapter made for a smaller Llama does not load onto SmolLM2: one line, not a traceback."""
    from peft import LoraConfig, get_peft_model

    from tests.tiny_llm import tiny_llama

    small = tiny_llama()
    lora = LoraConfig(r=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], task_type="CAUSAL_LM")
    get_peft_model(small, lora).save_pretrained(tmp_path / "adapter")
    from rapo.tools.llm import LocalLLM

    with pytest.raises(RapoError, match="does not fit the base model"):
        LocalLLM(adapter=tmp_path / "adapter").load()


@pytest.mark.slow
def test_trajectories_to_adapter_to_refine(tmp_path, embedder):
    # 1. Trajectories: a real `rapo optimize` run with the tiny generator, plus a store written directly with more
    #    pairs (more real prompts would take minutes of LLM time on 2 cores)
    graph = build_small_graph(tmp_path / "g.sqlite", embedder)
    real = ["a dog running on the beach", "a red car driving at night", "a boat on a calm lake",
            "a horse galloping in a field"]  # fmt: skip
    (tmp_path / "prompts.txt").write_text("\n".join(real) + "\n")
    proc = rapo("optimize", str(tmp_path / "prompts.txt"), "--out", str(tmp_path / "real"), "--graph", str(graph),
                "--generator", "tiny-wan", "--critics", "temporal,imaging", "--max-iters", "1", "--candidates", "1",
                timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    subjects = ["a dog", "a red car", "two cats", "a chef", "a boat", "a horse", "an old man", "a child", "a bird",
                "a train", "three ducks", "a dancer"]  # fmt: skip
    rows = [(s, f"{s.capitalize()}.", {"flow": 0.3, "imaging": 0.4}, f"{s.capitalize()} in a quiet street. {STYLE}",
             {"flow": 0.6, "imaging": 0.6}) for s in subjects]  # fmt: skip
    write_run(tmp_path / "run", rows)

    # 2. Dataset
    data = tmp_path / "data"
    proc = rapo("finetune", "dataset", "--runs", str(tmp_path / "real"), "--runs", str(tmp_path / "run"),
                "--out", str(data), "--val-fraction", "0.2", "--margin", "0", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    pairs = read_pairs(data, "train") + read_pairs(data, "val")
    from_real = [p for p in pairs if p.source["run_dir"] == str(tmp_path / "real")]
    # Whether the loop's best beat its first candidate depends on what the model wrote: every real prompt is either
    # a pair with a positive gain or counted as skipped, and every synthetic one (a gain of 0.25) is a pair.
    summary = json.loads(proc.stdout)
    assert {p.input for p in from_real} <= set(real) and all(p.gain > 0 for p in from_real)
    assert len(from_real) + sum(summary["skipped"].values()) == len(real)
    assert len(pairs) == len(from_real) + len(subjects)

    # 3. 20 LoRA steps on SmolLM2, then 2 more resumed from the checkpoint
    adapter = tmp_path / "adapter"
    args = ["finetune", "train", "--data", str(data), "--out", str(adapter), "--batch-size", "2", "--lr", "2e-3",
            "--max-len", "96", "--save-every", "10", "--json"]  # fmt: skip
    proc = rapo(*args, "--steps", "20")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["steps"] == 20 and result["train_loss"] > 0
    for name in ("adapter_config.json", "adapter_model.safetensors", "rapo_train.json"):
        assert (adapter / name).is_file()
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and set(config["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj"}
    resumed = rapo(*args, "--steps", "22", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["steps"] == 22
    assert json.loads(resumed.stdout)["resumed_from"].endswith("checkpoint-20")

    # 4. `rapo refine --adapter` loads it, records it, and runs the distilled path; `--adapter none` the plain one
    refine = ("refine", "--json", "--seed", "1", "--graph", str(graph), "a dog running on the beach")
    base, tuned = rapo(*refine, "--adapter", "none"), rapo(*refine, "--adapter", str(adapter))
    assert base.returncode == 0, base.stderr
    assert tuned.returncode == 0, tuned.stderr
    base, tuned = json.loads(base.stdout), json.loads(tuned.stdout)
    assert base["models"]["adapter"] is None and tuned["models"]["adapter"] == str(adapter)
    assert tuned["models"]["templates"] == ["distill_rewrite@2"]
    assert "distill_rewrite@2" not in base["models"]["templates"]
    assert all(c["text"].lower().startswith("a dog running on the beach") for c in tuned["candidates"])

    # 5. The trained weights change the model: the next-token logits of a rewrite request differ with it on and off
    import torch

    from rapo.tools import distill
    from rapo.tools.llm import LocalLLM

    tuned_llm = LocalLLM(adapter=adapter, dtype="float32")
    tokenizer, tuned_model = tuned_llm._loaded
    _, base_model = tuned_llm.plain()._loaded
    ids = tokenizer.apply_chat_template(distill.messages("a dog"), continue_final_message=True, return_tensors="pt")
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    with torch.no_grad():
        on, off = tuned_model(ids).logits[0, -1], base_model(ids).logits[0, -1]
    assert (on - off).abs().max() > 1e-3


@pytest.mark.slow
def test_loss_is_on_the_answer_tokens_only(llm):
    from rapo.finetune.dataset import Pair
    from rapo.finetune.train import collate, tokenize

    tokenizer = llm._loaded[0]
    example = tokenize(Pair(input="a dog", target="A brown dog runs on the beach."), tokenizer, 128)
    answer = [t for t, label in zip(example["input_ids"], example["labels"], strict=True) if label != -100]
    # The answer starts with the prompt, which Stage 1 forces at run time: only what follows it is learned.
    assert tokenizer.decode(example["input_ids"]).count("A dog. A brown dog runs on the beach.") == 1
    assert tokenizer.decode(answer).strip().startswith("A brown dog runs on the beach.")
    assert example["labels"][0] == -100 and len(answer) < len(example["input_ids"]) // 2
    assert tokenize(Pair(input="a dog", target="A dog."), tokenizer, 16) is None  # the prompt alone is longer
    batch = collate([example, {"input_ids": [1, 2], "labels": [-100, 2]}], pad_id=0)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch["attention_mask"][1].sum() == 2 and (batch["labels"][1, 2:] == -100).all()
