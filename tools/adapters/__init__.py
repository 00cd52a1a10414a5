"""LoRA adapters rapo ships for its default LLM; each folder is built by `finetune/default_adapter.py`.

`DEFAULT_ADAPTER` is the one Stage 1 uses on the default LLM (SmolLM2-135M-Instruct, `tools/llm.py`).
"""

from pathlib import Path

DEFAULT_ADAPTER = Path(__file__).resolve().parent / "vbench-smollm2"
