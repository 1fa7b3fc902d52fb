"""The Rust-core encoder gives the Hugging Face call's ids, with and without the ASCII shortcut."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from tokenizers import normalizers
from transformers import AutoTokenizer

from worker.demo.notes import demo_notes
from worker.model.wordpieces import WordpieceEncoder
from worker.segmentation import split_sentences

DEFAULT_TOKENIZER = Path(__file__).resolve().parent.parent / "worker" / "model" / "default"

TRICKY = [
    "Serum PSA was 4.2 ng/mL.",
    "HER2 3+ by IHC; PD-L1 TPS 80% (22C3).",
    "Café-au-lait spots, naïve T cells, Kager\ufffds fat pad.",
    "İstanbul ΣΊΣΥΦΟΣ straße ﬁbrosis",  # lower-casing that is not ASCII's
    "肿瘤标志物 CEA 升高",
    "tab\tand\nnewline\r\nand  double  spaces",
    "control\x00char\x01s and\x7fdelete",
    "non\u00a0breaking\u2009thin\u200bzero-width",
    "EGFR\u2014exon 19 deletion, KRAS G12C",
    "   ",
    "",
    "a" * 600,
    "Troponin [MASK] elevated; [SEP] [CLS] [UNK] [PAD] but [mask] and [ SEP ] are text",
]


def _reference(tokenizer: Any, texts: list[str], truncate_at: int) -> list[list[int]]:
    ids: list[list[int]] = tokenizer(texts, truncation=True, max_length=truncate_at)["input_ids"]
    return ids


def _random_texts(seed: int, count: int) -> list[str]:
    """Mostly printable ASCII, sometimes with control characters or other code points."""
    rng = random.Random(seed)
    alphabet = [chr(c) for c in range(32, 127)] * 8 + list("\t\n\r\x00\x0b\x1f\x7féÉßΩ中\u00a0")
    return ["".join(rng.choices(alphabet, k=rng.randint(0, 120))) for _ in range(count)]


@pytest.fixture(scope="module")
def default_tokenizer() -> Any:
    return AutoTokenizer.from_pretrained(str(DEFAULT_TOKENIZER))


def test_default_tokenizer_skips_the_normaliser_and_gives_the_same_ids(
    default_tokenizer: Any,
) -> None:
    encoder = WordpieceEncoder.for_tokenizer(default_tokenizer, 257)
    assert encoder is not None and encoder.skips_normaliser
    _source, notes = demo_notes(60)
    sentences = [note["text"][s:e] for note in notes for s, e in split_sentences(note["text"])]
    texts = TRICKY + sentences + _random_texts(seed=1, count=2000)
    assert encoder.ids(texts) == _reference(default_tokenizer, texts, 257)
    plain_only = [t for t in texts if t.isascii() and t.isprintable()]
    assert encoder.ids(plain_only) == _reference(default_tokenizer, plain_only, 257)


def test_cased_bert_keeps_case(default_tokenizer: Any) -> None:
    backend = default_tokenizer.backend_tokenizer
    saved = backend.normalizer
    backend.normalizer = normalizers.BertNormalizer(lowercase=False)
    try:
        encoder = WordpieceEncoder.for_tokenizer(default_tokenizer, 64)
        assert encoder is not None and encoder.skips_normaliser
        texts = ["Serum PSA was high", "serum psa was high", *TRICKY, *_random_texts(2, 500)]
        assert encoder.ids(texts) == _reference(default_tokenizer, texts, 64)
        assert encoder.ids(["PSA"]) != encoder.ids(["psa"])
    finally:
        backend.normalizer = saved


def test_other_normalisers_take_the_full_path(default_tokenizer: Any) -> None:
    backend = default_tokenizer.backend_tokenizer
    saved = backend.normalizer
    backend.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    try:
        encoder = WordpieceEncoder.for_tokenizer(default_tokenizer, 32)
        assert encoder is not None and not encoder.skips_normaliser
        texts = [*TRICKY, *_random_texts(3, 300)]
        assert encoder.ids(texts) == _reference(default_tokenizer, texts, 32)
    finally:
        backend.normalizer = saved


def test_slow_tokenizers_have_no_encoder() -> None:
    assert WordpieceEncoder.for_tokenizer(object(), 16) is None
