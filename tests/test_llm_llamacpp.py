"""The llama.cpp backend: the GGUF export's tensor mapping, the backend's logits against transformers', seeding."""

from __future__ import annotations

import gguf
import numpy as np
import pytest
import torch

from rapo.common import ModelError
from rapo.tools import distill
from rapo.tools.adapters import DEFAULT_ADAPTER
from rapo.tools.gguf_export import gguf_weights, write_gguf
from rapo.tools.llm import Decoding, LocalLLM, default_llm_path, load_transformers, shipped_gguf
from rapo.tools.llm_backends import make_llm, resolve_dtype
from rapo.tools.llm_llamacpp import LlamaCppLLM, llamacpp_available
from tests.required import skip_or_fail

CHAT = distill.messages("a dog running on the beach", ["golden hour light"])


def needs_llamacpp() -> None:
    if not llamacpp_available():
        skip_or_fail("LLAMACPP", "llama-cpp-python is not installed (scripts/install builds it)")


def test_export_writes_back_the_shipped_weights_exactly(tmp_path) -> None:
    """The base model through `gguf_weights` equals the shipped GGUF dequantized: names and q/k permutation right."""
    _, model = load_transformers(default_llm_path(), "float32")
    state = {k: v.numpy() for k, v in model.state_dict().items() if k != "lm_head.weight"}
    mapped = gguf_weights(state, shipped_gguf())
    reader = gguf.GGUFReader(shipped_gguf())
    assert len(mapped) == len(reader.tensors) == 272
    for tensor in reader.tensors:
        shipped = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(mapped[tensor.name].shape)
        assert np.array_equal(shipped, mapped[tensor.name]), tensor.name

    # A written file reads back with the same metadata and Q8_0 matrices within Q8_0's rounding.
    target = tmp_path / "base.gguf"
    write_gguf(state, shipped_gguf(), target, "q8_0")
    written = gguf.GGUFReader(target)
    assert (
        written.get_field("tokenizer.chat_template").contents()
        == reader.get_field("tokenizer.chat_template").contents()
    )
    q = next(t for t in written.tensors if t.name == "blk.0.attn_q.weight")
    assert q.tensor_type == gguf.GGMLQuantizationType.Q8_0
    back = gguf.quants.dequantize(q.data, q.tensor_type).reshape(mapped[q.name].shape)
    assert np.abs(back - mapped[q.name]).max() <= np.abs(mapped[q.name]).max() / 127


def test_backend_choice() -> None:
    """auto is llama.cpp for the default model when installed, transformers for a folder; q8_0 needs the default."""
    assert resolve_dtype("/some/model", "auto") in ("bfloat16", "float32")
    assert resolve_dtype(None, "auto") == ("q8_0" if llamacpp_available() else resolve_dtype("/x", "auto"))
    with pytest.raises(ModelError, match="RAPO_LLM_DTYPE must be one of"):
        resolve_dtype(None, "int3")
    with pytest.raises(ModelError, match="is for the default LLM on llama.cpp"):
        make_llm(str(default_llm_path()), "q8_0")
    assert isinstance(make_llm(None, "float32"), LocalLLM)


def test_llamacpp_logits_match_transformers() -> None:
    """The merged, exported model's next-token logits agree with transformers' float32 ones (adapter included)."""
    needs_llamacpp()
    tokenizer, model = load_transformers(default_llm_path(), "float32", DEFAULT_ADAPTER)
    llm = LlamaCppLLM("q8_0", adapter=DEFAULT_ADAPTER)
    llm.load()
    ids = tokenizer.apply_chat_template([CHAT], continue_final_message=True, return_dict=True)["input_ids"][0]
    with torch.inference_mode():
        reference = model(input_ids=torch.tensor([ids])).logits[0, -1]
    ours = llm._decode(ids, 0)[0]
    assert int(ours.argmax()) == int(reference.argmax())
    assert torch.corrcoef(torch.stack([ours, reference]))[0, 1] > 0.99
    # Without the adapter the logits differ: the merge is in the file.
    plain = llm.plain()
    assert isinstance(plain, LlamaCppLLM) and plain.adapter is None
    assert not torch.allclose(plain._decode(ids, 0)[0], ours, atol=1e-3)


def test_llamacpp_answers_are_seeded_and_stop_at_their_limits() -> None:
    needs_llamacpp()
    llm = make_llm(None, "q8_0", DEFAULT_ADAPTER)
    assert isinstance(llm, LlamaCppLLM) and llm.concurrency == 1
    sampling = Decoding(max_new_tokens=40, temperature=0.7, top_p=0.9)
    first, again = llm.generate(CHAT, 3, sampling), llm.generate(CHAT, 3, sampling)
    assert first.text == again.text and first.new_tokens == again.new_tokens <= 40
    many = llm.generate_many([CHAT, CHAT, CHAT], [3, 4, 5], sampling)
    assert many[0].text == first.text
    assert len({g.text for g in many}) > 1  # different seeds draw different answers
    short = llm.generate(CHAT, 3, sampling.model_copy(update={"max_new_tokens": 5}))
    assert short.new_tokens == 5
    worded = llm.generate(CHAT, 3, sampling.model_copy(update={"max_new_tokens": 40, "stop_after_words": 3}))
    assert worded.text.endswith((".", "!", "?")) or worded.new_tokens == 40
    greedy = Decoding(max_new_tokens=12, temperature=0.0)
    assert llm.generate(CHAT, 1, greedy).text == llm.generate(CHAT, 2, greedy).text  # greedy ignores the seed


def test_llamacpp_answers_do_not_depend_on_the_chats_before() -> None:
    """Reusing the cached system turn or a retried chat's prompt gives the answer a fresh process gives."""
    needs_llamacpp()
    other = distill.messages("a red car driving at night", ["neon lights"])
    sampling = Decoding(max_new_tokens=30, temperature=0.7, top_p=0.9)
    warm = make_llm(None, "q8_0", DEFAULT_ADAPTER)
    first = warm.generate(CHAT, 5, sampling)  # from an empty cache
    retried = warm.generate(CHAT, 6, sampling)  # the whole prompt reused
    after_other = [warm.generate(other, 5, sampling), warm.generate(CHAT, 5, sampling)]  # the system turn reused
    fresh = make_llm(None, "q8_0", DEFAULT_ADAPTER)
    assert after_other[1].text == first.text
    ids = warm._loaded[0].apply_chat_template([CHAT], continue_final_message=True, return_dict=True)["input_ids"][0]
    assert torch.equal(warm._prefill(CHAT, ids), fresh._prefill(CHAT, ids))  # bit for bit
    assert fresh.generate(other, 5, sampling).text == after_other[0].text
    assert make_llm(None, "q8_0", DEFAULT_ADAPTER).generate(CHAT, 6, sampling).text == retried.text
