"""Train a LoRA rewriter on (user prompt → better prompt) pairs. Reads top to bottom, nanoGPT style.

Commands:
    rapo finetune dataset --runs runs/tonight --out data/mine
    rapo finetune train --data data/mine --out adapters/mine --steps 200
    rapo finetune train --data data/mine --out adapters/mine --steps 400 --resume   # continue from the last checkpoint
    python -m rapo.finetune.default_adapter --work /tmp/rapo-distill                    # the shipped default adapter

Underneath is the transformers `Trainer` (checkpoints hold the adapter, optimizer, scheduler, RNG and step);
everything it is told is in `TrainConfig`, saved as `rapo_train.json` in the output folder. The result is a
standard PEFT adapter (`adapter_config.json` + `adapter_model.safetensors`), loadable by PEFT and by vLLM's
`--lora-modules`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rapo.common import ModelError, RapoError
from rapo.finetune.dataset import Pair, read_pairs
from rapo.tools import distill
from rapo.tools.llm import default_llm_path

TEMPLATE = distill.TEMPLATE


@dataclass
class TrainConfig:
    """Every knob of a run; written beside the adapter and checked on --resume."""

    # -- data and model
    data: str = ""  # a dataset folder from `rapo finetune dataset`
    out: str = ""  # the adapter folder; checkpoints go to out/checkpoints
    base: str | None = None  # a local causal LM folder; None means SmolLM2-135M-Instruct (converted)
    template: str = TEMPLATE
    max_len: int = 128  # tokens per example (prompt + answer); longer answers are cut
    # -- LoRA
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    # -- optimisation
    steps: int = 200
    batch_size: int = 4
    lr: float = 2e-4
    warmup_steps: int = 0
    weight_decay: float = 0.0
    seed: int = 0
    # -- bookkeeping
    save_every: int = 50  # checkpoint interval in steps
    keep_checkpoints: int = 2
    log_every: int = 10
    threads: int | None = None  # torch CPU threads; None leaves torch's default


@dataclass
class TrainResult:
    """What a run did: where the adapter is, its loss, and how fast it went."""

    adapter: str
    steps: int
    examples: int
    train_loss: float | None
    seconds: float
    steps_per_second: float
    resumed_from: str | None


def resolve_base(base: str | Path | None) -> Path:
    """The base model folder; a ModelError before anything loads when it does not exist."""
    if base is None:
        return default_llm_path()
    path = Path(base).expanduser()
    if not (path / "config.json").is_file():
        raise ModelError(f"base model not found: {path} is not a model folder with a config.json")
    return path


def check_adapter_matches(adapter: Path, base: Path) -> None:
    """Raise a ModelError when a PEFT adapter was made for a model of another shape than `base`.

    Compares the adapter's recorded base config (hidden size, layers) with the base's, without loading weights.
    """
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise ModelError(f"adapter not found: {adapter} has no adapter_config.json")
    try:
        recorded = (
            json.loads((adapter / "rapo_train.json").read_text()) if (adapter / "rapo_train.json").is_file() else {}
        )
        base_config = json.loads((base / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read the configs of {adapter} or {base}: {exc}") from None
    shape = recorded.get("base_shape")
    if shape and shape != shape_of(base_config):
        raise ModelError(
            f"adapter {adapter} was trained on a base of shape {shape}, but {base} is {shape_of(base_config)}"
        )


def shape_of(config: dict) -> dict[str, object]:
    """A model config's type and sizes: what an adapter must match."""
    return {k: config.get(k) for k in ("model_type", "hidden_size", "num_hidden_layers", "num_attention_heads")}


def tokenize(pair: Pair, tokenizer, max_len: int) -> dict[str, list[int]] | None:  # noqa: ANN001
    """Chat-formatted ids with labels on the answer after its forced prefix only (-100 elsewhere).

    The request is `tools.distill.messages`: the answer starts with the user's prompt, which Stage 1 forces at run
    time, so the model is not trained to write it. None when no answer token fits in `max_len`.
    """
    request = distill.messages(pair.input, pair.details)
    prompt_ids = tokenizer.apply_chat_template(request, continue_final_message=True, tokenize=True)
    answer = {"role": "assistant", "content": distill.with_prefix(pair.input, pair.target)}
    full_ids = tokenizer.apply_chat_template(request[:-1] + [answer], tokenize=True)
    if hasattr(prompt_ids, "keys"):  # newer transformers return a BatchEncoding
        prompt_ids, full_ids = prompt_ids["input_ids"], full_ids["input_ids"]
    if full_ids[: len(prompt_ids)] != prompt_ids or len(prompt_ids) >= max_len:
        return None
    ids = list(full_ids[:max_len])  # (T,)
    labels = [-100] * len(prompt_ids) + ids[len(prompt_ids) :]  # (T,)
    return {"input_ids": ids, "labels": labels}


def collate(batch: list[dict[str, list[int]]], pad_id: int) -> dict[str, object]:
    """Right-pad a batch: input ids with `pad_id`, labels with -100, and the attention mask."""
    import torch

    width = max(len(x["input_ids"]) for x in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # (B, T)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)  # (B, T)
    mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, T)
    for row, x in enumerate(batch):
        n = len(x["input_ids"])
        ids[row, :n] = torch.tensor(x["input_ids"])
        labels[row, :n] = torch.tensor(x["labels"])
        mask[row, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Train (or, with `resume`, continue) a LoRA adapter; every input is checked before the model loads."""
    # 1. Check inputs: data, base, output folder, resume compatibility
    out, data = Path(config.out), Path(config.data)
    pairs = read_pairs(data, "train")
    base = resolve_base(config.base)
    if config.steps < 1 or config.batch_size < 1 or config.max_len < 16:
        raise RapoError("`steps` and `batch_size` must be >= 1 and `max_len` >= 16")
    checkpoints = out / "checkpoints"
    last = _last_checkpoint(checkpoints)
    if resume and last is None:
        raise RapoError(f"--resume: no checkpoint in {checkpoints}")
    if not resume and last is not None:
        raise RapoError(f"{out} already holds a training run: pass --resume to continue it, or another --out")
    if resume:
        previous = json.loads((out / "rapo_train.json").read_text())
        if previous.get("base_shape") != shape_of(json.loads((base / "config.json").read_text())):
            raise ModelError(f"--resume: the checkpoints in {out} were trained on another base than {base}")

    # 2. Load the base and wrap it with LoRA
    tokenizer, model = lora_model(base, config)

    # 3. Tokenize: chat template, loss on the answer only
    examples = [x for x in (tokenize(p, tokenizer, config.max_len) for p in pairs) if x]
    if not examples:
        raise RapoError(f"no training example fits in --max-len {config.max_len} tokens")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out.mkdir(parents=True, exist_ok=True)
    record = {
        **asdict(config),
        "base": str(base),
        "base_shape": shape_of(model.config.to_dict()),
        "examples": len(examples),
    }
    (out / "rapo_train.json").write_text(json.dumps(record, indent=2))

    # 4. Train: the Trainer does the loop, checkpoints and the progress bar
    started = time.perf_counter()
    start_step = _step_of(last) if resume and last else 0
    output = fit(model, examples, pad_id, config, checkpoints, last if resume else None)
    seconds = time.perf_counter() - started

    # 5. Save the adapter (and the tokenizer, so vLLM and PEFT users need nothing else)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    steps = output.global_step - start_step
    return TrainResult(
        adapter=str(out), steps=output.global_step, examples=len(examples),
        train_loss=round(output.training_loss, 4) if output.training_loss is not None else None,
        seconds=round(seconds, 2), steps_per_second=round(steps / seconds, 4) if seconds > 0 else 0.0,
        resumed_from=str(last) if resume and last else None,
    )  # fmt: skip


def lora_model(base: Path, config: TrainConfig):  # noqa: ANN201 - transformers is imported lazily
    """(tokenizer, base model in float32 wrapped with `config`'s LoRA), seeded; a ModelError when it does not fit."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.chat_template is None:
        raise ModelError(f"base model {base} has no chat template: use an instruction-tuned model")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    lora = LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
        target_modules=config.target_modules, task_type="CAUSAL_LM",
    )  # fmt: skip
    try:
        return tokenizer, get_peft_model(model, lora)
    except ValueError as exc:
        raise ModelError(f"cannot put LoRA on {base}: {str(exc).splitlines()[0]}") from None


def fit(  # noqa: ANN201 - transformers is imported lazily
    model,  # noqa: ANN001
    examples: list[dict[str, list[int]]],
    pad_id: int,
    config: TrainConfig,
    checkpoints: Path | None,
    resume_from: Path | None = None,
):
    """Run the transformers `Trainer` over tokenized `examples` ({"input_ids", "labels"}); its `TrainOutput`.

    Checkpoints every `config.save_every` steps into `checkpoints`, none when it is None; `resume_from` continues
    from one. A progress bar on a terminal, JSON log lines otherwise, both on stderr.
    """
    import torch
    from transformers import Trainer, TrainingArguments
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    scratch = tempfile.TemporaryDirectory() if checkpoints is None else None  # the Trainer wants a folder anyway
    args = TrainingArguments(
        output_dir=str(checkpoints or scratch.name),
        max_steps=config.steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        lr_scheduler_type="linear",
        seed=config.seed,
        data_seed=config.seed,
        save_strategy="steps" if checkpoints else "no",
        save_steps=config.save_every,
        save_total_limit=config.keep_checkpoints,
        logging_steps=config.log_every,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not sys.stderr.isatty(),
        dataloader_num_workers=0,
        remove_unused_columns=False,
    )
    trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=lambda b: collate(b, pad_id))
    # Results go to stdout and everything else to stderr: the Trainer's own loggers print to stdout.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_progress_callback())
    try:
        return trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    finally:
        if scratch:
            scratch.cleanup()


def _progress_callback():  # noqa: ANN202 - transformers is imported lazily
    """A progress bar on a terminal, else one JSON line per log; both on stderr."""
    from transformers.trainer_callback import ProgressCallback, TrainerCallback

    def write(state, logs) -> None:  # noqa: ANN001
        sys.stderr.write(json.dumps({"step": state.global_step, **logs}) + "\n")

    class Bar(ProgressCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN202, D102
            if state.is_world_process_zero and logs:
                self.training_bar.clear() if self.training_bar else None
                write(state, logs)

    class Lines(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001, ANN202, D102
            if state.is_world_process_zero and logs:
                write(state, logs)

    return Bar() if sys.stderr.isatty() else Lines()


def _step_of(checkpoint: Path) -> int:
    return int(checkpoint.name.rsplit("-", 1)[-1])


def _last_checkpoint(folder: Path) -> Path | None:
    found = [p for p in folder.glob("checkpoint-*") if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()]
    return max(found, key=_step_of) if found else None
