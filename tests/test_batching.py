"""Batched LLM calls change nothing: a chat answered in a batch gets the text it gets alone (float32), and Stage 1
over a prompt file gives each prompt the result a single run gives, with its answers in shared batches."""

import json

import pytest

from rapo.graph_db.backends import open_store
from rapo.tools.llm import Decoding, LocalLLM, default_llm_path, word_boost
from rapo.tools.retrieval import GraphLookup
from rapo.tools.stage1 import Stage1, Stage1Settings
from tests.graphs import build_small_graph


@pytest.fixture(scope="module")
def wordy_llm(tmp_path_factory):
    """A tiny random Llama that writes (random) words, with a random LoRA on it: the distilled rewriter's shape."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    from tests.tiny_llm import tiny_llama

    folder = tmp_path_factory.mktemp("wordy")
    model = tiny_llama(seed=1)
    model.save_pretrained(folder / "model")
    AutoTokenizer.from_pretrained(default_llm_path()).save_pretrained(folder / "model")
    torch.manual_seed(0)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, config).save_pretrained(folder / "lora")
    return folder


def test_a_chat_gets_the_same_answer_alone_and_in_a_batch(wordy_llm):
    llm = LocalLLM(wordy_llm / "model", dtype="float32")
    chats = [[{"role": "user", "content": text}] for text in
             ["a dog", "a red car driving at night in the rain", "hi", "a chef chopping onions, close-up"]]  # fmt: skip
    # Each chat its own limits and words to weave in (`word_boost`), as Stage 1's asks have
    limits = [(20, None, ["beach"]), (30, 5, []), (12, None, ["zebra", "kite"]), (25, 8, [])]
    decodings = [Decoding(max_new_tokens=n, temperature=0.7, stop_after_words=w, boost_words=b, boost=4.0)
                 for n, w, b in limits]  # fmt: skip
    seeds = [3, 4, 5, 3]
    alone = [llm.generate(chat, seed, d) for chat, seed, d in zip(chats, seeds, decodings, strict=True)]
    together = llm.generate_many(chats, seeds, decodings, batch_size=3)  # a batch of 3, then one of 1
    assert [g.text for g in together] == [g.text for g in alone]
    assert [g.new_tokens for g in together] == [g.new_tokens for g in alone]
    assert all(g.new_tokens <= d.max_new_tokens for g, d in zip(together, decodings, strict=True))
    assert len({g.text for g in alone}) == 4  # the seeds and chats differ, and so do the answers
    # Sampled: another seed gives another answer; greedy needs none
    assert llm.generate(chats[0], 99, decodings[0]).text != alone[0].text
    with pytest.raises(ValueError, match="must share temperature"):
        llm.generate_many(chats[:2], [0, 0], [decodings[0], decodings[1].model_copy(update={"temperature": 0.1})])


@pytest.mark.parametrize("both_branches", [False, True])
def test_stage1_over_many_prompts_gives_each_the_result_of_a_single_run(wordy_llm, embedder, tmp_path, both_branches):
    lookup = GraphLookup(open_store(build_small_graph(tmp_path / "g.sqlite", embedder)), embedder)
    llm = LocalLLM(wordy_llm / "model", dtype="float32", adapter=wordy_llm / "lora")
    stage1 = Stage1(lookup, llm, Stage1Settings(target="short", both_branches=both_branches))
    prompts = ["a dog running on the beach", "a man riding a horse", "a red car at night"]

    alone = [stage1.run(p, seed=2) for p in prompts]
    batches: list[int] = []
    answer = llm.generate_many
    llm.generate_many = lambda chats, *args, **kwargs: batches.append(len(chats)) or answer(chats, *args, **kwargs)
    together = stage1.run_many(prompts, seed=2)

    def same(result) -> str:
        return json.dumps(result.model_dump(mode="json", exclude={"timings"}), sort_keys=True)

    assert [same(r) for r in together] == [same(r) for r in alone]
    # One batch per attempt: the first holds every prompt's first branch (both branches with both_branches)
    first_asks = sum(1 + (both_branches and bool(r.merged)) for r in alone)
    assert batches[0] == first_asks > len(prompts) - 1
    assert len(batches) <= 2 * stage1.settings.attempts
    asked = sum(len([c for c in r.candidates if c.step == "distill"]) + len(r.rejected) for r in alone)
    assert sum(batches) == asked  # every answer was asked once, in a batch


def test_word_boost_raises_the_first_tokens_of_the_words_not_written_yet():
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(default_llm_path())
    prompt = tokenizer.encode("A dog running on the beach.", add_special_tokens=False)
    decodings = [Decoding(boost_words=["shoreline", "gulls"], boost=2.5), Decoding(boost_words=[], boost=2.5)]
    boost = word_boost(tokenizer, len(prompt), decodings)
    shoreline = {tokenizer.encode(form, add_special_tokens=False)[0] for form in (" shoreline", " Shoreline")}
    assert [tokenizer.decode([t]) for t in sorted(shoreline)] == [" shoreline", " Shore"]

    def raised(text: str) -> set[int]:
        """The tokens row 0's boost raises after `text`."""
        written = tokenizer.encode(text, add_special_tokens=False)
        ids = torch.tensor([prompt + written, prompt + written])
        scores = boost(ids, torch.zeros(2, len(tokenizer)))
        assert not scores[1].any()  # the row without words is left alone
        assert set(scores[0].unique().tolist()) <= {0.0, 2.5}
        return set(scores[0].nonzero().flatten().tolist())

    # " gulls" starts with " g": too short to raise without raising every g-word, so only the shoreline's starts
    assert raised("") == shoreline
    assert raised(" Gulls wheel over the Shoreline.") == set()  # written, in the guards' sense (stems, any case)
    assert raised(" Waves roll in.") == shoreline
    assert word_boost(tokenizer, 0, [Decoding(boost_words=["x"], boost=0.0), Decoding()]) is None
