"""Pick an LLM backend by its `--llm` value: a local transformers model or an OpenAI-compatible server.

Apart from `tools/llm.py` (the local backend and the types both share), so that neither backend imports the other's
importer.
"""

from __future__ import annotations

from pathlib import Path

from tools.llm import ChatLLM, LocalLLM
from tools.llm_openai import OpenAILLM, is_endpoint_spec


def make_llm(spec: str | Path | None, dtype: str = "auto", adapter: str | Path | None = None) -> ChatLLM:
    """The backend an `--llm` value names: `openai:URL[#MODEL]` for a served model, else a local folder.

    None means the default SmolLM2. `adapter` is a PEFT folder for a local model, a served LoRA module's name
    otherwise.
    """
    if is_endpoint_spec(spec):
        return OpenAILLM(str(spec), adapter=str(adapter) if adapter else None)
    return LocalLLM(spec, dtype=dtype, adapter=adapter)
