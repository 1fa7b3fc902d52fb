"""Several sentences per row: layout, and scores equal to one padded row per sentence."""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.test_backends import SENTENCES as BACKEND_SENTENCES
from worker.model.classifier import SequenceClassifier
from worker.model.packing import pack, packed_positions

SENTENCES = [
    *BACKEND_SENTENCES,
    "Hemoglobin A1c 7.9 percent, fasting glucose 162 mg/dL, LDL 131.",
] * 5


def test_pack_places_each_sentence_contiguously_with_restarted_positions() -> None:
    rng = random.Random(3)
    batch = [[rng.randrange(5, 99) for _ in range(rng.randrange(1, 40))] for _ in range(60)]
    packed = pack(batch, width=64, pad_id=0)
    rows, width = packed.input_ids.shape
    assert width == 64
    flat_ids = packed.input_ids.reshape(-1)
    flat_pos = packed.position_ids.reshape(-1)
    flat_seg = packed.segments.reshape(-1)
    for index, ids in enumerate(batch):
        start = int(packed.starts[index])
        span = slice(start, start + len(ids))
        assert start // width == (start + len(ids) - 1) // width  # never split over rows
        assert flat_ids[span].tolist() == ids
        assert flat_pos[span].tolist() == list(range(len(ids)))
        assert (flat_seg[span] == index).all()
    # Every position is one sentence's or padding, and padding is what is left over.
    assert (flat_seg >= 0).sum() == sum(len(ids) for ids in batch)
    assert (flat_ids[flat_seg < 0] == 0).all()
    # Best-fit decreasing fills rows: fewer rows than one per sentence, little padding.
    assert rows < len(batch) / 2
    assert packed.positions == packed_positions([len(ids) for ids in batch], width=64)
    assert 1 - (flat_seg >= 0).mean() < 0.1


def test_a_sentence_wider_than_the_row_widens_every_row() -> None:
    packed = pack([[1] * 10, [2] * 300, [3] * 5], width=128, multiple=8)
    assert packed.input_ids.shape[1] == 304  # 300 rounded up to the multiple
    assert packed_positions([10, 300, 5], width=128, multiple=8) == packed.positions
    assert packed_positions([], width=128) == 0


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_packed_scores_equal_one_padded_row_per_sentence(tiny_model_dir: Path, dtype: str) -> None:
    packed = SequenceClassifier.load(tiny_model_dir, device="cpu", dtype=dtype, threads=1)
    padded = SequenceClassifier.load(
        tiny_model_dir, device="cpu", dtype=dtype, threads=1, packing=False
    )
    assert packed.packs and not padded.packs
    rows = [item.ids for item in padded.encode(SENTENCES)]
    alone = [padded.predict_ids([row])[0] for row in rows]
    together = packed.predict_ids(rows)
    tolerance = 1e-5 if dtype == "float32" else 2e-2
    assert together == pytest.approx(alone, abs=tolerance)
    # Scores do not depend on which sentences share the batch or their order.
    shuffled = list(range(len(rows)))
    random.Random(1).shuffle(shuffled)
    again = packed.predict_ids([rows[i] for i in shuffled])
    assert [again[shuffled.index(i)] for i in range(len(rows))] == pytest.approx(
        together, abs=tolerance
    )
    lengths = [len(row) for row in rows]
    assert packed.computed_positions(lengths) < padded.computed_positions(lengths)


def test_models_that_are_not_bert_fall_back_to_padded_rows(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    import torch
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(5)
    config = DistilBertConfig(
        vocab_size=200, dim=32, n_layers=1, n_heads=2, hidden_dim=64, max_position_embeddings=128
    )
    DistilBertForSequenceClassification(config).save_pretrained(tmp_path)
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_model_dir / name).exists():
            shutil.copy(tiny_model_dir / name, tmp_path / name)
    model = SequenceClassifier.load(tmp_path, device="cpu", dtype="float32", threads=1)
    assert not model.packs
    rows = [[min(token, 199) for token in item.ids] for item in model.encode(SENTENCES[:7])]
    scores = model.predict_ids(rows)
    assert len(scores) == 7 and np.isfinite(scores).all()
