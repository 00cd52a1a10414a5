"""Write a LoRA adapter for the default LLM with random (not zero) weights, so that it changes every answer.

    python tests/make_lora.py OUT_DIR

scripts/test serves one from the test vLLM server; a trained adapter would take minutes of CPU to make.
"""

from __future__ import annotations

import sys
from pathlib import Path


def make_lora(out: Path, rank: int = 8, seed: int = 0) -> Path:
    """A PEFT adapter (q/v projections, random A and B) on the default SmolLM2, saved with `save_pretrained`."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from rapo.tools.llm import default_llm_path

    if (out / "adapter_config.json").is_file():
        return out
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(default_llm_path())
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(out)
    return out


if __name__ == "__main__":
    print(make_lora(Path(sys.argv[1])))
