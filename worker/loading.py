"""Load the configured model (or the embedded default) and describe it for provenance."""

from __future__ import annotations

import re

from worker.config import WorkerSettings
from worker.errors import FatalError
from worker.events import Provenance
from worker.lexicon import LEXICON_VERSION
from worker.model.classifier import SequenceClassifier
from worker.segmentation import SEGMENTER_VERSION

#: Output ids name ``max_sentence_tokens`` only when it differs from this (the default).
DEFAULT_MAX_SENTENCE_TOKENS: int = WorkerSettings.model_fields["max_sentence_tokens"].default

#: ``model_sha256``: the full content hash, or a prefix of at least this many hex digits.
MIN_HASH_PREFIX = 12
_HEX = re.compile(r"[0-9a-f]+")


def load_classifier(settings: WorkerSettings) -> SequenceClassifier:
    """The classifier of ``settings.model_path``, or the embedded default model when unset;
    :class:`FatalError` when ``settings.model_sha256`` is set and the model's hash differs."""
    classifier = _load(settings)
    if settings.model_sha256 is not None:
        check_model_hash(settings.model_sha256, classifier.info.sha256, model=classifier.info.name)
    return classifier


def check_model_hash(expected: str, actual: str, *, model: str = "the model") -> None:
    """:class:`FatalError` unless ``actual`` (64 hex digits) is ``expected``, or starts with it.

    ``expected`` is the full hash or a prefix of at least :data:`MIN_HASH_PREFIX` hex digits
    (the start-up log prints 12); letter case and surrounding blanks do not matter.
    """
    wanted = expected.strip().lower()
    if not (MIN_HASH_PREFIX <= len(wanted) <= 64 and _HEX.fullmatch(wanted)):
        raise FatalError(
            f"model_sha256 must be the model's sha256 or its first {MIN_HASH_PREFIX} or more "
            f"hex digits, got {expected!r}"
        )
    if not actual.startswith(wanted):
        raise FatalError(
            f"model_sha256 mismatch: {model} has sha256 {actual}, model_sha256 is {wanted}"
        )


def _load(settings: WorkerSettings) -> SequenceClassifier:
    if settings.model_path:
        return SequenceClassifier.load(
            settings.model_path,
            device=settings.device,
            dtype=settings.dtype,
            max_length=settings.max_sentence_tokens,
            threads=settings.torch_threads,
            backend=settings.backend,
            packing=settings.pack_sentences,
        )
    from worker.model.default import DEFAULT_MODEL_NAME, DEFAULT_MODEL_VERSION, default_model_dir

    return SequenceClassifier.load(
        default_model_dir(),
        name=DEFAULT_MODEL_NAME,
        version=DEFAULT_MODEL_VERSION,
        device=settings.device,
        dtype=settings.dtype,
        max_length=settings.max_sentence_tokens,
        threads=settings.torch_threads,
        backend=settings.backend,
        packing=settings.pack_sentences,
    )


def provenance_for(classifier: SequenceClassifier, settings: WorkerSettings) -> Provenance:
    info = classifier.info
    return Provenance(
        model_name=info.name,
        model_version=info.version,
        model_sha256=info.sha256,
        threshold=settings.threshold,
        segmenter_version=SEGMENTER_VERSION,
        lexicon_version=LEXICON_VERSION if settings.lexicon_rules else None,
        max_sentence_tokens=(
            settings.max_sentence_tokens
            if settings.max_sentence_tokens != DEFAULT_MAX_SENTENCE_TOKENS
            else None
        ),
    )
