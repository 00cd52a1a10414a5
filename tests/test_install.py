"""`pip install rapo` adds exactly one import name, `rapo`, with every folder and data file under it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_one_import_name(tmp_path):
    # Build from a copy of the tracked files, so the checkout gets no build/ or egg-info
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    src = tmp_path / "src"
    for name in tracked:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    proc = subprocess.run([*build, str(src)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = zipfile.ZipFile(next(tmp_path.glob("rapo-*.whl"))).namelist()

    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"rapo"}
    for expected in (
        "rapo/__init__.py", "rapo/__main__.py", "rapo/common.py", "rapo/agent/cli/main.py", "rapo/agent/web/app.py",
        "rapo/tools/stage1.py", "rapo/tools/critics/base.py", "rapo/graph_db/default_graph.json",
        "rapo/prompts/templates/distill_rewrite.toml", "rapo/finetune/train.py",
        "rapo/tools/adapters/vbench-smollm2/adapter_model.safetensors", "rapo/tools/verifiers/minilm-judge/weights.npz",
    ):  # fmt: skip
        assert expected in names, f"{expected} is not in the wheel"
    assert any(n.startswith("rapo/agent/web/templates/") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert (
        "rapo = rapo.agent.cli.main:main"
        in zipfile.ZipFile(next(tmp_path.glob("rapo-*.whl"))).read(entry_points).decode()
    )
