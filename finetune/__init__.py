"""Stage 3: distil optimised trajectories into a LoRA rewriter (dataset, train, evaluate).

`DEFAULT_ADAPTER` is the one rapo ships and Stage 1 uses on the default LLM: built by `finetune/default_adapter.py`.
"""

from pathlib import Path

DEFAULT_ADAPTER = Path(__file__).resolve().parent / "adapters" / "vbench-smollm2"
