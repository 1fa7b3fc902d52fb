"""Load the configured model (or the embedded default) and describe it for provenance."""

from __future__ import annotations

from worker.config import WorkerSettings
from worker.events import Provenance
from worker.model.classifier import SequenceClassifier
from worker.segmentation import SEGMENTER_VERSION


def load_classifier(settings: WorkerSettings) -> SequenceClassifier:
    """The classifier of ``settings.model_path``, or the embedded default model when unset."""
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
    )
