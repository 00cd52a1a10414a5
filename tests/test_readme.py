"""The README's examples as written: every `rapo` command in its bash blocks parses, and each one that needs no GPU,
server or model of the user's runs for real, in README order, in one scratch folder.

The examples run with `$RAPO_LLM` set to a tiny random Llama (`tests/tiny_llm.py`): the point is that the commands,
their options and the files they pass along work as the README says, not what SmolLM2 writes (tests/test_cli.py
and tests/test_stage1.py test the default model).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

# Every `rapo` example of the README, with None when this test runs it, or why it does not (and what tests it).
NEEDS_GPU = "needs a real video model folder the user downloads (tests/test_generator.py tests the loading code)"
NEEDS_NEO4J = "needs a Neo4j server on the README's address (tests/test_neo4j.py and tests/test_transfer.py run one)"
NEEDS_VLLM = "needs a served model (tests/test_vllm.py runs these against a vLLM server)"
NEEDS_RAY = "starts Ray and reuses runs/tonight (tests/test_scale.py runs --ray, --store and `runs list` on them)"
EXAMPLES: dict[str, str | None] = {
    'rapo refine "a dog running on the beach"': None,
    'rapo refine "a red car at night"': None,
    'rapo refine --json --seed 3 "a red car at night"': None,
    "rapo refine --file prompts.txt --out refined.jsonl": None,
    'rapo refine --graph my.graph --llm ~/models/Qwen2.5-1.5B-Instruct --top-k 5 --threshold 0.45 "..."': (
        "needs a model folder the user downloads (tests/test_cli.py passes --llm a local folder)"
    ),
    "rapo refine --file prompts.txt --out batched.jsonl --batch 8": None,
    "rapo serve": "a server that runs until stopped (tests/test_serve.py starts one and refines through it)",
    'rapo refine "a cat on a sofa"': None,
    "rapo graph build captions.tsv --graph my.graph --where modality=video": None,
    "rapo graph import-rapo ./graph/graph_test1 --graph rapo.graph": None,
    "rapo graph stats --graph my.graph": None,
    'rapo graph query "a dog running on the beach" --graph my.graph --threshold 0.4': None,
    "rapo graph push my.graph bolt://127.0.0.1:7687": NEEDS_NEO4J,
    "rapo graph pull bolt://127.0.0.1:7687 copy.graph": NEEDS_NEO4J,
    "rapo graph build my_captions.tsv --graph ~/graphs/video.graph --where modality=video": None,
    'rapo refine --graph ~/graphs/video.graph "a dog running on the beach"': None,
    'rapo graph push ~/graphs/video.graph "$NEO4J_URL"': NEEDS_NEO4J,
    'rapo refine "a dog running on the beach" --graph "$NEO4J_URL"': NEEDS_NEO4J,
    'rapo graph build more.tsv --graph "$NEO4J_URL"': NEEDS_NEO4J,
    'rapo graph pull "$NEO4J_URL" copy.graph': NEEDS_NEO4J,
    "rapo optimize prompts.txt --out runs/tonight": None,
    "rapo optimize prompts.txt --out runs/tonight --resume": None,
    "rapo optimize prompts.txt --out runs/overlap --overlap 2": None,
    "rapo optimize vbench.json --out runs/wan --generator ~/models/Wan2.1-T2V-1.3B-Diffusers --frames 81 --height 480 "
    "--width 832 --steps 20 --critics flow,temporal,imaging,clip --clip ~/models/clip-vit-base-patch32 "
    "--threshold flow=0.6": NEEDS_GPU,
    "rapo optimize laws.jsonl --out runs/physics --critics physics,flow": None,
    "rapo runs list runs/*": None,
    "rapo runs show runs/tonight": None,
    "rapo runs export runs/tonight --out best.jsonl": None,
    "rapo runs export runs/tonight --out best.txt --format vbench": None,
    'rapo chat "a red car at night"': None,
    'rapo chat "a red car at night" --generator tiny-wan --critics flow,temporal,imaging': None,
    "rapo chat --list": None,
    "rapo chat --session 7c2c328c": "an example session id (tests/test_chat.py resumes real sessions)",
    "rapo ui --runs runs/tonight --runs runs/wan": "a server that runs until stopped (tests/test_ui.py drives it)",
    "rapo ui --runs runs/tonight --host 0.0.0.0": "a server that runs until stopped (tests/test_ui.py drives it)",
    "rapo optimize prompts.txt --out runs/tonight --ray": NEEDS_RAY,
    "rapo optimize prompts.txt --out runs/tonight --ray --resume": NEEDS_RAY,
    "rapo optimize prompts.txt --out /shared/runs/tonight --ray auto --store postgresql://rapo@db.lab:5432/rapo "
    "--graph bolt://graph.lab:7687 --llm openai:http://vllm.lab:8000/v1#Qwen2.5-7B-Instruct "
    "--generator /shared/models/Wan2.1-T2V-1.3B-Diffusers": "needs a Ray cluster, PostgreSQL, Neo4j and vLLM servers",
    "rapo runs list /shared/runs/tonight": "reads the cluster run of the example above",
    "rapo finetune dataset --runs runs/tonight --runs runs/wan --out data/mine": None,
    "rapo finetune train --data data/mine --out adapters/mine --steps 200": None,
    "rapo finetune eval --adapter adapters/mine --data data/mine": None,
    'rapo refine --adapter adapters/mine "a red car at night"': None,
    "rapo finetune discriminator --runs runs/wan --out discriminators/wan": (
        "needs round 0 of a run whose Stage 1 wrote both branches (tests/test_discriminator.py trains from one)"
    ),
    "rapo finetune discriminator --runs runs/wan --kind lora --out discriminators/lora": (
        "needs round 0 of a run whose Stage 1 wrote both branches, and minutes of LoRA steps "
        "(tests/test_discriminator.py trains one from such a run, on a tiny base and on SmolLM2)"
    ),
    'rapo refine --discriminator discriminators/wan "a red car at night"': "needs the discriminator above",
    "rapo eval sample vbench --prompts VBench_full_info.json --out runs/vbench --rounds 0,2,4": None,
    "rapo eval score vbench runs/vbench": (
        "needs VBench's package and the weights it downloads (tests/test_eval.py checks the message without it)"
    ),
    "rapo eval score vbench runs/vbench --evaluator my_metrics.py:score": None,
    "rapo eval sample phygenbench --prompts prompts.json --out runs/phygen --generator "
    "~/models/Wan2.1-T2V-1.3B-Diffusers --frames 81 --height 480 --width 832 --steps 20 --rounds 0,1,2,3,4": NEEDS_GPU,
    'rapo refine --llm openai:http://127.0.0.1:18000/v1 "a red car at night"': NEEDS_VLLM,
    "rapo refine --llm openai:http://127.0.0.1:18000/v1#SmolLM2-135M-Instruct --adapter mine --file p.txt "
    "-o out.jsonl": NEEDS_VLLM,
    "rapo optimize p.txt --out runs/x --llm openai:http://127.0.0.1:18000/v1 --controller llm": NEEDS_VLLM,
    "rapo optimize p.txt --out runs/x --critics flow,vlm --vlm openai:http://gpu-box:8000/v1#Qwen2.5-VL-7B-Instruct": (
        NEEDS_VLLM
    ),
}
# What the person types into `rapo chat`: generate (refused without a generator), then accept.
STDIN = {cmd: "g\na\n" for cmd in EXAMPLES if cmd.startswith("rapo chat ") and "--list" not in cmd}


def readme_commands() -> list[str]:
    """Every `rapo ...` command in the README's bash blocks, continuations joined and comments cut, in order."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = re.sub(r"\s+#(\s.*)?$", "", line).strip()
            if found := re.search(r"(?:^|\s|/)(rapo .*)$", line):
                commands.append(re.sub(r"\s+", " ", found.group(1)))
    return commands


def test_every_readme_example_is_listed_here():
    """A new or changed README example must be run here or say why not; a stale entry must go."""
    written = readme_commands()
    assert len(written) == len(set(written)), "an example appears twice in the README"
    assert [c for c in written if c not in EXAMPLES] == [], "README examples this test does not know"
    assert [c for c in EXAMPLES if c not in written] == [], "entries here that the README no longer has"


@pytest.mark.parametrize("command", list(EXAMPLES))
def test_every_readme_example_parses(command):
    """Each example's command and options exist and take the values written, the ones that need a GPU too."""
    import typer

    from rapo.agent.cli.main import app
    from rapo.agent.cli.optimize import ray_flag_value

    args = ray_flag_value(shlex.split(command)[1:])
    group = typer.main.get_command(app)
    ctx = group.make_context("rapo", args)
    cmd = group
    while hasattr(cmd, "resolve_command"):  # a group (typer's vendored click): parse the subcommand's arguments
        name, cmd, rest = cmd.resolve_command(ctx, ctx._protected_args + ctx.args)
        ctx = cmd.make_context(name, rest, parent=ctx)
    assert cmd.callback is not None and ctx.params


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, embedder):
    """The folder the examples run in, with the files they name and a $HOME of its own."""
    from tests.test_finetune import STYLE, write_run
    from tests.test_importers import write_reference_graph

    work = tmp_path_factory.mktemp("readme")
    (work / "home" / "graphs").mkdir(parents=True)
    (work / "prompts.txt").write_text("a dog running on the beach\na red car driving at night\n")
    law = "Due to gravity, water flows downward and impacts the surface creating turbulence."
    (work / "laws.jsonl").write_text(json.dumps({"prompt": "A waterfall cascades over jagged rocks.", "phys_law": law}))
    captions = "".join(f"{modality}\t{caption}\n" for modality, caption in [
        ("modality", "caption"), ("video", "a man is riding a horse on a beach"),
        ("video", "a woman is chopping onions in a kitchen"), ("image", "a dog running in a park"),
        ("video", "a dog is running on the beach at sunset"), ("video", "a red car driving on a street at night"),
    ])  # fmt: skip
    vbench = [{"prompt_en": "a dog running on the beach", "dimension": ["dynamic_degree", "subject_consistency"]},
              {"prompt_en": "a red car at night", "dimension": ["color"]}]  # fmt: skip
    (work / "VBench_full_info.json").write_text(json.dumps(vbench))
    (work / "my_metrics.py").write_text("def score(bench, folder, group, samples):\n    return len(samples) / 10\n")
    (work / "captions.tsv").write_text(captions)
    (work / "my_captions.tsv").write_text(captions)
    (work / "graph").mkdir()
    write_reference_graph(work / "graph" / "graph_test1", embedder)
    # runs/wan stands for the README's GPU run: a trajectory store with pairs whose best beat their first candidate
    rows = [(s, f"{s.capitalize()}.", {"flow": 0.3}, f"{s.capitalize()} on a quiet street. {STYLE}", {"flow": 0.6})
            for s in ("a dog", "a red car", "two cats", "a chef", "a boat", "a horse")]  # fmt: skip
    write_run(work / "runs" / "wan", rows)
    return work


# Files an example must leave behind, beyond exiting 0.
WRITES = {
    "rapo refine --file prompts.txt --out refined.jsonl": ["refined.jsonl"],
    "rapo refine --file prompts.txt --out batched.jsonl --batch 8": ["batched.jsonl"],
    "rapo graph build captions.tsv --graph my.graph --where modality=video": ["my.graph"],
    "rapo graph import-rapo ./graph/graph_test1 --graph rapo.graph": ["rapo.graph"],
    "rapo graph build my_captions.tsv --graph ~/graphs/video.graph --where modality=video": ["home/graphs/video.graph"],
    "rapo optimize prompts.txt --out runs/tonight": ["runs/tonight/best_prompts.jsonl", "runs/tonight/run.json"],
    "rapo optimize laws.jsonl --out runs/physics --critics physics,flow": ["runs/physics/best_prompts.jsonl"],
    "rapo eval sample vbench --prompts VBench_full_info.json --out runs/vbench --rounds 0,2,4": [
        "runs/vbench/eval/vbench/samples.jsonl"
    ],
    "rapo eval score vbench runs/vbench --evaluator my_metrics.py:score": ["runs/vbench/eval/vbench/scores.png"],
    "rapo runs export runs/tonight --out best.jsonl": ["best.jsonl"],
    "rapo runs export runs/tonight --out best.txt --format vbench": ["best.txt"],
    "rapo finetune dataset --runs runs/tonight --runs runs/wan --out data/mine": ["data/mine/train.jsonl"],
    "rapo finetune train --data data/mine --out adapters/mine --steps 200": ["adapters/mine/adapter_config.json"],
    "rapo finetune eval --adapter adapters/mine --data data/mine": ["adapters/mine/eval.json"],
}


@pytest.mark.slow
def test_readme_examples_run_as_written(scratch, tiny_llm):
    env = {**os.environ, "HOME": str(scratch / "home"), "RAPO_LLM": str(tiny_llm), "NO_COLOR": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # fmt: skip
    ran = []
    for command in readme_commands():
        if EXAMPLES[command] is not None:
            continue
        proc = subprocess.run(["bash", "-c", command], cwd=scratch, env=env, input=STDIN.get(command, ""),
                              capture_output=True, text=True, timeout=600)  # fmt: skip
        assert proc.returncode == 0, f"{command}\nexit {proc.returncode}\n{proc.stderr[-3000:]}"
        for path in WRITES.get(command, []):
            assert (scratch / path).is_file(), f"{command} did not write {path}"
        ran.append(command)
    assert len(ran) == sum(v is None for v in EXAMPLES.values())
    # The examples pass their files along: two prompts in, two lines out, the run's best prompts exported in order
    assert len((scratch / "refined.jsonl").read_text().splitlines()) == 2
    assert len((scratch / "best.txt").read_text().splitlines()) == 2
