"""Write a transformers Llama model (the default LLM, with its LoRA adapter merged) as a GGUF file for llama.cpp.

The shipped GGUF supplies everything but the weights (architecture, tokenizer, chat template); the weights come from
the model in memory, named with gguf-py's own tensor map and with the query and key rows permuted back into
llama.cpp's rotary layout (transformers undoes that permutation when it loads a GGUF). `tests/test_llm_llamacpp.py`
checks the round trip: the base model written back equals the shipped file's weights.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

FILE_TYPES = {"q8_0": "MOSTLY_Q8_0", "f16": "MOSTLY_F16", "f32": "ALL_F32"}
"""The weight types a merged model is written in, by the name RAPO_LLM_DTYPE takes, with gguf-py's file-type name."""


def permute_rotary(weights: np.ndarray, heads: int) -> np.ndarray:
    """Query or key rows of a transformers model in llama.cpp's order (convert_hf_to_gguf.py's `permute`)."""
    return (
        weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
        .swapaxes(1, 2)
        .reshape(weights.shape)
    )


def gguf_weights(state: dict[str, np.ndarray], source: Path) -> dict[str, np.ndarray]:
    """The float32 weights of `state` (transformers' names) under the names and layout of the GGUF at `source`."""
    import gguf

    reader = gguf.GGUFReader(source)
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{source}: only llama GGUF files are supported, not {arch}")
    heads = int(_field(reader, "llama.attention.head_count"))
    kv_heads = int(_field(reader, "llama.attention.head_count_kv"))
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, int(_field(reader, "llama.block_count")))
    renamed = {names.get_name(k, try_suffixes=(".weight", ".bias")): v for k, v in state.items()}
    out = {}
    for tensor in reader.tensors:
        if tensor.name not in renamed:
            raise ValueError(f"{source}: tensor {tensor.name} has no counterpart in the model")
        weights = renamed[tensor.name].astype(np.float32)
        if ".attn_q." in tensor.name:
            weights = permute_rotary(weights, heads)
        elif ".attn_k." in tensor.name:
            weights = permute_rotary(weights, kv_heads)
        out[tensor.name] = weights
    return out


def write_gguf(state: dict[str, np.ndarray], source: Path, target: Path, weight_type: str = "q8_0") -> None:
    """Write `state` (a Llama model's float32 weights by transformers' names) as a GGUF at `target`.

    Matrices are stored as `weight_type`, vectors (the norms) in float32, as llama.cpp's converter does. Written to
    a file of this process's own and renamed, so an interrupted export leaves no half file under the target's name,
    and two processes exporting at once (Ray workers on a fresh machine) each rename a whole file.
    """
    import gguf

    qtype = gguf.GGMLQuantizationType[weight_type.upper()]
    reader = gguf.GGUFReader(source)
    weights = gguf_weights(state, source)
    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # processes exporting at once never share it
    writer = gguf.GGUFWriter(partial, _field(reader, "general.architecture"))
    for field in reader.fields.values():
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue  # written by GGUFWriter itself
        value = int(gguf.LlamaFileType[FILE_TYPES[weight_type]]) if field.name == "general.file_type" else None
        kind = field.types[0]
        sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents() if value is None else value, kind, sub_type=sub)
    for tensor in reader.tensors:
        data = weights[tensor.name]
        kind = qtype if data.ndim == 2 else gguf.GGMLQuantizationType.F32
        writer.add_tensor(tensor.name, gguf.quants.quantize(data, kind), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    partial.rename(target)


def export_merged(model, source: Path, target: Path, weight_type: str, provenance: dict) -> Path:  # noqa: ANN001
    """`target` holding `model` (a transformers Llama, adapter merged) as GGUF, with `provenance` beside it."""
    state = {k: v.detach().float().numpy() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    target.parent.mkdir(parents=True, exist_ok=True)
    write_gguf(state, source, target, weight_type)
    target.with_suffix(".json").write_text(json.dumps(provenance, indent=1))
    return target


def _field(reader, name: str):  # noqa: ANN001, ANN202 - gguf is imported lazily
    field = reader.get_field(name)
    if field is None:
        raise ValueError(f"GGUF has no {name}")
    return field.contents()
