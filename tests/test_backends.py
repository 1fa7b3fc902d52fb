"""Inference backends against eager PyTorch on the tiny model; tokenising and padding paths."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from worker.backend_choices import REJECTED, SUPPORTED
from worker.batching import CPU_LIMITS
from worker.config import WorkerSettings, load_settings
from worker.errors import FatalError, UsageError
from worker.loading import load_classifier
from worker.model.backends import check_backend
from worker.model.classifier import CUDA_LANES, SequenceClassifier, lanes_for

SENTENCES = [
    "Serum PSA was 4.2 ng/mL.",
    "The patient tolerated the procedure well.",
    "HER2 positive, ER negative, Ki-67 elevated.",
    "Knee pain.",
    "history of present illness : chest pain with elevated troponin and creatinine " * 4,
    "x",
]


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("BIOMARKER_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def eager(tiny_model_dir: Path) -> SequenceClassifier:
    return SequenceClassifier.load(tiny_model_dir, device="cpu", dtype="float32", threads=1)


def test_bf16_agrees_with_fp32_on_the_tiny_model(tiny_model_dir: Path) -> None:
    half = SequenceClassifier.load(tiny_model_dir, device="cpu", dtype="bfloat16", threads=1)
    full = SequenceClassifier.load(tiny_model_dir, device="cpu", dtype="float32", threads=1)
    assert half.info.dtype == "bfloat16"
    assert half.predict(SENTENCES) == pytest.approx(full.predict(SENTENCES), abs=0.02)


def test_bench_onnx_engine_matches_eager_torch_and_is_cached_by_hash(
    tiny_model_dir: Path, eager: SequenceClassifier, cache: Path
) -> None:
    from bench.engines import with_engine
    from bench.onnx_engine import onnx_engine

    onnx = with_engine(eager, onnx_engine(tiny_model_dir, eager.info.sha256, threads=1))
    assert onnx.info.backend == "onnx"
    assert onnx.predict(SENTENCES) == pytest.approx(eager.predict(SENTENCES), abs=1e-5)
    # Batches of mixed lengths and a single row agree too (padding must not leak).
    rows = [item.ids for item in eager.encode(SENTENCES)]
    assert onnx.predict_ids(rows[1:2]) == pytest.approx(eager.predict_ids(rows[1:2]), abs=1e-5)
    exported = list(cache.glob("onnx/*/model.onnx"))
    assert len(exported) == 1 and eager.info.sha256[:24] in str(exported[0])
    stamp = exported[0].stat().st_mtime_ns
    onnx_engine(tiny_model_dir, eager.info.sha256, threads=1)
    assert exported[0].stat().st_mtime_ns == stamp  # reused, not exported again


def test_loader_wires_the_backend_setting(tiny_model_dir: Path) -> None:
    def settings(backend: str) -> WorkerSettings:
        overrides = {"model_path": str(tiny_model_dir), "backend": backend, "device": "cpu"}
        return load_settings(overrides=overrides)

    assert load_classifier(settings("torch")).info.backend == "torch"


@pytest.mark.parametrize("backend", [*sorted(REJECTED), "tensorrt"])
def test_settings_refuse_backends_the_worker_cannot_run(backend: str) -> None:
    """Refused when the settings load (config, env, chart), with the reason, before torch loads."""
    reason = "is not supported" if backend in REJECTED else "unknown backend"
    with pytest.raises(UsageError, match=f"backend: .*'{backend}' {reason}|{reason}"):
        load_settings(overrides={"backend": backend})


@pytest.mark.parametrize("backend", sorted(REJECTED))
def test_rejected_backends_fail_clearly(tiny_model_dir: Path, backend: str) -> None:
    with pytest.raises(FatalError, match=f"backend '{backend}' is not supported"):
        SequenceClassifier.load(tiny_model_dir, device="cpu", backend=backend)


def test_unknown_backend_fails_and_torch_is_the_one_kept(tiny_model_dir: Path) -> None:
    with pytest.raises(FatalError, match="unknown backend"):
        SequenceClassifier.load(tiny_model_dir, device="cpu", backend="tensorrt")
    check_backend("torch")
    assert SUPPORTED == ("torch",)
    assert set(REJECTED) == {"torch-int8", "onnx", "onnx-int8"}


@pytest.mark.parametrize("max_length", [512, 16])
def test_fast_encode_equals_hugging_face_call(tiny_model_dir: Path, max_length: int) -> None:
    model = SequenceClassifier.load(tiny_model_dir, device="cpu", max_length=max_length)
    fast = model.encode(SENTENCES)
    model._wordpieces = None  # the Hugging Face tokenizer call, as before the fast path
    assert fast == model.encode(SENTENCES)
    assert all(len(item.ids) <= model.info.max_length for item in fast)
    assert any(item.truncated for item in fast) == (max_length == 16)


def test_padding_builds_ids_and_mask_in_one_pass(eager: SequenceClassifier) -> None:
    ids, mask = eager.pad([[2, 5, 3], [2, 3], [2, 6, 7, 8, 3]])
    assert ids.dtype == np.int64 and mask.dtype == np.int64
    assert ids.tolist() == [[2, 5, 3, 0, 0], [2, 3, 0, 0, 0], [2, 6, 7, 8, 3]]
    assert mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 1]]


def test_batches_stop_growing_when_padding_would_exceed_the_cap() -> None:
    from worker.batching import BatchingSettings, padding_ratio, plan_batches

    lengths = [10] * 8 + [11] + [40] * 3
    capped = plan_batches(lengths, BatchingSettings(token_budget=4096, min_batch_rows=4))
    assert capped == [list(range(9)), [9, 10, 11]]  # 10s and the 11 together; 40s apart
    for batch in capped:
        assert padding_ratio([lengths[i] for i in batch]) <= 0.1
    uncapped = BatchingSettings(token_budget=4096, max_padding=1.0)
    assert plan_batches(lengths, uncapped) == [list(range(12))]
    # Below min_batch_rows a batch keeps growing whatever its padding.
    few = plan_batches([3, 40], BatchingSettings(token_budget=4096, min_batch_rows=8))
    assert few == [[0, 1]]
    # Rounding to the pad multiple is not counted as avoidable padding.
    rounded = BatchingSettings(token_budget=4096, pad_multiple=8, min_batch_rows=1)
    assert plan_batches([9, 12, 16, 3], rounded) == [[3], [0, 1, 2]]


def test_lanes_one_per_core_for_batch_parallel_cpu_and_several_on_a_gpu() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda:0")
    assert lanes_for(cpu, cores=4, batch_parallel=True) == 4
    assert lanes_for(cpu, cores=4, batch_parallel=False) == 1
    # A GPU gets overlapping lanes whatever the host's cores: one batch's host work hides
    # behind the other's kernels.
    assert lanes_for(cuda, cores=16, batch_parallel=False) == CUDA_LANES >= 2


def test_concurrent_batches_give_the_same_scores_as_one_thread(tiny_model_dir: Path) -> None:
    from tests.fakes import note_of
    from worker.batching import BatchingSettings
    from worker.inference import InferenceLoop
    from worker.notes import Note
    from worker.scoring import score_jobs

    parallel = SequenceClassifier.load(tiny_model_dir, device="cpu", dtype="float32", threads=2)
    serial = SequenceClassifier.load(
        tiny_model_dir, device="cpu", dtype="float32", threads=2, batch_parallel=False
    )
    assert (parallel.concurrency, serial.concurrency) == (2, 1)
    assert parallel.batch_limits == CPU_LIMITS
    rows = [item.ids for item in serial.encode(SENTENCES * 5)]
    settings = BatchingSettings(token_budget=64, min_batch_rows=1)
    expected = serial.predict_ids(rows)

    def scored(model: SequenceClassifier, loop: bool) -> tuple[list[float], int]:
        work = note_of(rows)
        done: list[Note] = []
        if not loop:
            score_jobs(model, work.jobs, settings, on_complete=done.append)
            return work.scores, len(done)
        runner = InferenceLoop(scorer=model, settings=settings, on_complete=done.append)
        runner.start()
        try:
            runner.submit([work])
            deadline = time.monotonic() + 10
            while not done and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            runner.stop()
        return work.scores, len(done)

    for use_loop in (False, True):
        scores, completions = scored(parallel, use_loop)
        assert completions == 1
        assert scores == pytest.approx(expected, abs=1e-5)


def test_auto_dtype_on_cpu_is_bf16_only_with_matrix_units(tiny_model_dir: Path) -> None:
    from worker.model.classifier import cpu_has_fast_bf16, resolve_dtype

    expected = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
    assert resolve_dtype("auto", torch.device("cpu")) == expected
    assert resolve_dtype("float32", torch.device("cpu")) == torch.float32
    model = SequenceClassifier.load(tiny_model_dir, device="cpu", threads=1)
    assert model.info.dtype == str(expected).removeprefix("torch.")


def test_a_roberta_checkpoint_cuts_sentences_to_the_positions_it_can_use(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """RoBERTa's position ids start after the padding index: max_position_embeddings 130 with
    padding index 1 leaves 128 positions; a sentence cut at 130 would index past the table."""
    from transformers import AutoTokenizer, RobertaConfig, RobertaForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir))
    torch.manual_seed(0)
    shape = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=130,
        pad_token_id=1,
        num_labels=2,
        **shape,
    )
    RobertaForSequenceClassification(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    model = SequenceClassifier.load(tmp_path, device="cpu", dtype="float32", max_length=1000)
    assert model.info.max_length == 128
    (encoded,) = model.encode(["word " * 300])
    assert len(encoded.ids) == 128
    assert 0.0 <= model.predict_ids([encoded.ids])[0] <= 1.0
