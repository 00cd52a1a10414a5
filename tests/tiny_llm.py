"""A tiny randomly initialised Llama with SmolLM2's tokenizer: for tests whose point is the plumbing, not the text."""

from __future__ import annotations

from pathlib import Path

EOS = 2  # SmolLM2's <|im_end|>


def tiny_llama(seed: int = 0, ends_at_once: bool = False):  # noqa: ANN201 - transformers is imported lazily
    """A 2-layer, 64-wide Llama with SmolLM2's vocabulary and random weights (about 3 M parameters).

    With `ends_at_once`, every answer ends after at most a token or two: the last MLP's bias pushes the residual
    stream along one axis, and only <|im_end|> reads that axis. Commands then run in seconds with answers that the
    guards reject, which is what a test of the commands' plumbing wants.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, bos_token_id=1, eos_token_id=EOS,
                         mlp_bias=ends_at_once)  # fmt: skip
    model = LlamaForCausalLM(config)
    if ends_at_once:
        with torch.no_grad():
            bias = model.model.layers[-1].mlp.down_proj.bias
            bias.zero_()
            bias[0] = 1e3  # the final norm maps the residual to about (8, 0, 0, ...)
            model.lm_head.weight[:, 0] = 0
            model.lm_head.weight[EOS, 0] = 100
    return model


def save_tiny_llm(out: Path, seed: int = 0) -> Path:
    """A `tiny_llama` that ends every answer at once, saved as a model folder with SmolLM2's tokenizer at `out`."""
    from transformers import AutoTokenizer

    from rapo.tools.llm import default_llm_path

    if not (out / "config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(default_llm_path())
        assert tokenizer.eos_token_id == EOS, tokenizer.eos_token
        tiny_llama(seed, ends_at_once=True).save_pretrained(out)
        tokenizer.save_pretrained(out)
    return out
