"""Fine-tune a BERT-family checkpoint as a binary sentence classifier; seeded and resumable.

The output directory is a standard Hugging Face checkpoint (``save_pretrained`` model and
tokenizer, ``id2label = {0: "no_biomarker", 1: "biomarker"}``) plus ``training_args.json`` and,
while training, ``checkpoint/`` (model, optimizer, scheduler, RNG state and position), written
every ``checkpoint_every`` steps and at each epoch end. ``resume`` continues from it exactly:
the batch order of every epoch is a pure function of the seed and the epoch number.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from training.jsonl import LabelledRow, read_labelled
from training.metrics import evaluation_report
from training.predict import predict_probs
from worker.errors import UsageError

__all__ = ["ID2LABEL", "TrainConfig", "train"]

ID2LABEL = {0: "no_biomarker", 1: "biomarker"}
_CHECKPOINT = "checkpoint"
_STATE = "training_state.pt"
_SORT_POOL = 50  # batches per length-sorted pool


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters and paths of one training run."""

    base: str
    train_path: Path
    out_dir: Path
    eval_path: Path | None = None
    epochs: int = 2
    lr: float = 8e-5
    batch_size: int = 32
    max_length: int = 96
    seed: int = 13
    max_steps: int | None = None
    warmup_ratio: float = 0.06
    weight_decay: float = 0.01
    checkpoint_every: int = 200
    freeze_word_embeddings: bool = True
    threads: int | None = None
    resume: bool = False


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Shuffled batches of similar-length rows; deterministic for (seed, epoch)."""
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * _SORT_POOL
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda index: lengths[index])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches


def _load_base(config: TrainConfig) -> tuple[Any, Any]:
    source = config.out_dir / _CHECKPOINT if config.resume else None
    path = str(source) if source and source.is_dir() else config.base
    try:
        tokenizer = AutoTokenizer.from_pretrained(config.base, use_fast=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            path,
            num_labels=2,
            id2label=ID2LABEL,
            label2id={name: index for index, name in ID2LABEL.items()},
        )
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot load base model {config.base}: {exc}") from exc
    _reset_call_state(tokenizer)
    return model, tokenizer


def _reset_call_state(tokenizer: Any) -> None:
    """Drop padding/truncation stored in a fast tokenizer (some packaged ones pad to 128)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        backend.no_padding()
        backend.no_truncation()


def _optimizer(model: Any, config: TrainConfig) -> torch.optim.AdamW:
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr)


def _schedule(total: int, warmup: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return factor


@dataclass(slots=True)
class _Position:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


def _save_checkpoint(
    model: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    position: _Position,
    out_dir: Path,
) -> None:
    tmp = out_dir / f".{_CHECKPOINT}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    state = {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "position": asdict(position),
    }
    torch.save(state, tmp / _STATE)
    final = out_dir / _CHECKPOINT
    old = out_dir / f".{_CHECKPOINT}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _restore(
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    out_dir: Path,
) -> _Position:
    path = out_dir / _CHECKPOINT / _STATE
    if not path.is_file():
        return _Position()
    state = torch.load(path, weights_only=True)  # tensors, numbers, dicts: no pickled code
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return _Position(**state["position"])


def _evaluate(model: Any, tokenizer: Any, rows: list[LabelledRow], config: TrainConfig) -> Any:
    probs = predict_probs(
        model, tokenizer, [row.text for row in rows],
        batch_size=64, max_length=config.max_length,
    )  # fmt: skip
    return evaluation_report(
        [row.label for row in rows], probs, [row.source for row in rows], threshold=0.5
    )


@dataclass(slots=True)
class _Run:
    """Everything one training loop needs."""

    config: TrainConfig
    model: Any
    tokenizer: Any
    encoded: list[list[int]]
    labels: list[int]
    total: int
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR


def _prepare(config: TrainConfig) -> _Run:
    if config.threads:
        torch.set_num_threads(config.threads)
    rows = read_labelled(config.train_path)
    config.out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model, tokenizer = _load_base(config)
    if config.freeze_word_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    texts = [row.text for row in rows]
    encoded = tokenizer(texts, truncation=True, max_length=config.max_length)["input_ids"]
    total = math.ceil(len(rows) / config.batch_size) * config.epochs
    if config.max_steps:
        total = min(total, config.max_steps)
    optimizer = _optimizer(model, config)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(total, int(total * config.warmup_ratio))
    )
    labels = [row.label for row in rows]
    return _Run(config, model, tokenizer, encoded, labels, total, optimizer, scheduler)


def _step(run: _Run, batch: list[int]) -> float:
    padded = run.tokenizer.pad({"input_ids": [run.encoded[i] for i in batch]}, return_tensors="pt")
    target = torch.tensor([run.labels[i] for i in batch], dtype=torch.long)
    loss = run.model(**padded, labels=target).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    return float(loss.item())


def _epoch(run: _Run, position: _Position, bar: Any) -> None:
    """Train from ``position`` to the end of its epoch (or the step limit)."""
    config = run.config
    lengths = [len(ids) for ids in run.encoded]
    batches = epoch_batches(lengths, config.batch_size, config.seed, position.epoch)
    for batch in batches[position.step_in_epoch :]:
        if position.global_step >= run.total:
            return
        loss = _step(run, batch)
        position.step_in_epoch += 1
        position.global_step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", epoch=position.epoch)
        if position.global_step % config.checkpoint_every == 0:
            _save_checkpoint(run.model, run.optimizer, run.scheduler, position, config.out_dir)
    position.epoch += 1
    position.step_in_epoch = 0


def train(config: TrainConfig) -> dict[str, Any]:
    """Run (or resume) training; return the last evaluation report (empty without eval data)."""
    eval_rows = read_labelled(config.eval_path) if config.eval_path else []
    run = _prepare(config)
    position = _Position()
    if config.resume:
        position = _restore(run.optimizer, run.scheduler, config.out_dir)
    report: dict[str, Any] = {}
    run.model.train()
    bar = tqdm(
        total=run.total,
        initial=position.global_step,
        desc="train",
        unit="step",
        file=sys.stderr,
        dynamic_ncols=True,
    )
    while position.epoch < config.epochs and position.global_step < run.total:
        _epoch(run, position, bar)
        if eval_rows:
            report = _evaluate(run.model, run.tokenizer, eval_rows, config)
            overall = report["overall"]
            bar.write(
                f"eval after step {position.global_step}: f1={overall['f1']} "
                f"precision={overall['precision']} recall={overall['recall']}"
            )
            (config.out_dir / f"eval_step{position.global_step}.json").write_text(
                json.dumps(report, indent=2) + "\n"
            )
        _save_checkpoint(run.model, run.optimizer, run.scheduler, position, config.out_dir)
    bar.close()
    run.model.save_pretrained(config.out_dir)
    _reset_call_state(run.tokenizer)
    run.tokenizer.save_pretrained(config.out_dir)
    args = {
        key: str(value) if isinstance(value, Path) else value
        for key, value in asdict(config).items()
    }
    (config.out_dir / "training_args.json").write_text(json.dumps(args, indent=2) + "\n")
    return report
