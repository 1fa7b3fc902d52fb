"""Shared fixtures: one real Kafka broker per session (fails, never skips), a tiny random BERT."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import hypothesis
import pytest

from devkit.localkafka import LocalKafka
from tests.kafka_helpers import STARTED, KafkaTestKit

# Property tests draw the same examples on every run (a failure reproduces; CI never flakes);
# HYPOTHESIS_PROFILE=explore draws new ones.
hypothesis.settings.register_profile("repeatable", derandomize=True, database=None)
hypothesis.settings.register_profile("explore", max_examples=2_000)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "patient",
    "was",
    "is",
    "a",
    "of",
    "and",
    "with",
    "in",
    "to",
    "for",
    "on",
    "at",
    "by",
    "psa",
    "her2",
    "egfr",
    "brca1",
    "troponin",
    "hemoglobin",
    "hgb",
    "creatinine",
    "potassium",
    "sodium",
    "ki-67",
    "er",
    "pr",
    "tumor",
    "marker",
    "level",
    "serum",
    "elevated",
    "mutation",
    "positive",
    "negative",
    "normal",
    "ng",
    "ml",
    "mg",
    "dl",
    "pain",
    "chest",
    "knee",
    "procedure",
    "well",
    "tolerated",
    "history",
    "present",
    "illness",
    "labs",
    "plan",
    ".",
    ",",
    ":",
    ";",
    "+",
    "-",
    "/",
    "%",
]


@pytest.fixture(scope="session")
def kafka() -> Iterator[LocalKafka]:
    """A real single-node KRaft broker on 127.0.0.1 (startup failure fails the tests)."""
    cluster = LocalKafka.start(die_with_parent=True)  # no orphan broker if pytest is killed
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(autouse=True)
def _no_stray_workers() -> Iterator[None]:
    """Kill worker processes a failing test left behind (by PID)."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture()
def kit(kafka: LocalKafka) -> KafkaTestKit:
    return KafkaTestKit(kafka.bootstrap_servers, prefix=f"t{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised, seeded 2-layer BERT classifier with a small WordPiece vocab."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    directory = tmp_path_factory.mktemp("tiny-bert")
    vocab = directory / "vocab.txt"
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    pieces = [f"##{c}" for c in letters]
    vocab.write_text("\n".join(dict.fromkeys(_VOCAB + letters + pieces)) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    torch.manual_seed(7)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=2,
        id2label={0: "no_biomarker", 1: "biomarker"},
        label2id={"no_biomarker": 0, "biomarker": 1},
    )
    model = BertForSequenceClassification(config)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


#: Public EHR sample messages (HL7 v2, FHIR, C-CDA) with a SOURCE.md; read in place, never copied.
EHR_DIR_ENV = "BIOMARKER_EHR_SAMPLES"


def _ehr_samples_dir() -> Path | None:
    candidates = [os.environ.get(EHR_DIR_ENV), "/work/shared/data/ehr"]
    candidates.append(str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ehr"))
    for candidate in candidates:
        if candidate and (Path(candidate) / "SOURCE.md").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def ehr_samples() -> Path:
    """The directory of public EHR sample messages (fails, never skips, when it is missing)."""
    found = _ehr_samples_dir()
    if found is None:
        pytest.fail(f"EHR sample messages not found: set ${EHR_DIR_ENV} to their directory")
    return found
