"""Pick an LLM backend by `--llm` and RAPO_LLM_DTYPE: transformers, llama.cpp or an OpenAI-compatible server.

Apart from `tools/llm.py` (the local backend and the types all share), so that no backend imports another's importer.
"""

from __future__ import annotations

from pathlib import Path

from rapo.common import ModelError
from rapo.tools.llm import ChatLLM, LocalLLM, fastest_cpu_dtype
from rapo.tools.llm_llamacpp import WEIGHT_TYPES, LlamaCppLLM, llamacpp_available
from rapo.tools.llm_openai import OpenAILLM, is_endpoint_spec

DTYPES = ("auto", *WEIGHT_TYPES, "bfloat16", "float32")


def resolve_dtype(spec: str | Path | None, dtype: str) -> str:
    """What `dtype` means for this model; `auto`: q8_0 (llama.cpp) for the default one, else the CPU's fastest.

    q8_0 needs llama-cpp-python installed; without it `auto` falls back to transformers.
    """
    if dtype not in DTYPES:
        raise ModelError(f"RAPO_LLM_DTYPE must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if dtype != "auto":
        return dtype
    return "q8_0" if spec is None and llamacpp_available() else fastest_cpu_dtype()


def make_llm(spec: str | Path | None, dtype: str = "auto", adapter: str | Path | None = None) -> ChatLLM:
    """The backend an `--llm` value names: `openai:URL[#MODEL]` for a served model, else a local model.

    None means the default SmolLM2, on llama.cpp for a GGUF weight type (`RAPO_LLM_DTYPE=q8_0`, what `auto` picks when
    llama-cpp-python is installed) and on transformers for bfloat16 or float32. `adapter` is a PEFT folder for a
    local model, a served LoRA module's name otherwise.
    """
    if is_endpoint_spec(spec):
        return OpenAILLM(str(spec), adapter=str(adapter) if adapter else None)
    dtype = resolve_dtype(spec, dtype)
    if dtype in WEIGHT_TYPES:
        if spec is not None:
            raise ModelError(f"RAPO_LLM_DTYPE={dtype} is for the default LLM on llama.cpp; {spec} takes float32")
        return LlamaCppLLM(dtype, adapter=adapter)
    return LocalLLM(spec, dtype=dtype, adapter=adapter)
