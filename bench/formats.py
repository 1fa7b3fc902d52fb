"""Input formats: extraction speed per format, and end to end on HL7 v2 and FHIR input against
the same notes as the project's own note events.

1. **Extraction alone**, messages/s per format: the public sample messages (``--samples``, the
   ``ehr`` directory with a ``SOURCE.md``; every file of a format, looped) and the benchmark's
   notes wrapped as HL7 v2 MDM messages (one TX OBX per line), FHIR DocumentReferences (base64
   text/plain) and Debezium change events (the ``mapping`` format).
2. **End to end**, notes/s through the local broker and the real pipeline with the default model
   (``--notes`` MTSamples notes, backlog mode): the same texts as ``note`` events, as HL7 v2 and
   as FHIR, in interleaved rounds (the order rotates per round, so drift of a shared machine's
   speed falls on each format in turn); each format's ratio to the ``note`` run of the same round,
   in wall-clock throughput and in process CPU time per note (the robust one on a shared machine).

Prints the figures and writes ``bench/results/formats.json``::

    python -m bench.formats [--notes 300] [--rounds 2] [--samples ../shared/data/ehr]
"""

from __future__ import annotations

import argparse
import base64
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from bench import e2e
from bench.corpus import MAX_SENTENCE_CHARS, Corpus, load_corpus
from devkit.localkafka import LocalKafka
from worker.config import load_settings
from worker.events import parse_note
from worker.inputs import extractor_for
from worker.inputs.content import tidy
from worker.inputs.mapping import MappingSpec, mapping_extractor
from worker.loading import load_classifier
from worker.model.classifier import SequenceClassifier
from worker.segmentation import split_sentences

RESULTS = Path(__file__).resolve().parent / "results" / "formats.json"
SAMPLE_FORMATS = {".hl7": "hl7v2", ".txt": "hl7v2", ".json": "fhir", ".ndjson": "fhir"}
DEBEZIUM = MappingSpec.model_validate(
    {"preset": "debezium", "columns": {"id": "note_id", "text": "note_text"}}
)


def _hl7_escape(text: str) -> str:
    return (
        text.replace("\\", "\\E\\")
        .replace("|", "\\F\\")
        .replace("^", "\\S\\")
        .replace("&", "\\T\\")
        .replace("~", "\\R\\")
    )


def as_hl7(note_id: str, text: str) -> bytes:
    """An MDM^T02 message carrying ``text``, one TX OBX per line."""
    segments = [
        f"MSH|^~\\&|EHR|HOSP|NLP|HOSP|20261202101500||MDM^T02^MDM_T02|{note_id}|P|2.5.1",
        "PID|1||MRN1^^^HOSP^MR",
        f"TXA|1|PN|TX|20261202101000||||||||{note_id}|||||AU",
    ]
    for n, line in enumerate(text.split("\n"), start=1):
        segments.append(f"OBX|{n}|TX|NOTE^Note^L||{_hl7_escape(line)}||||||F")
    return "\r".join(segments).encode() + b"\r"


def as_fhir(note_id: str, text: str) -> bytes:
    """A DocumentReference with ``text`` as base64 text/plain."""
    data = base64.b64encode(text.encode()).decode()
    return orjson.dumps(
        {
            "resourceType": "DocumentReference",
            "id": note_id,
            "meta": {"versionId": "1"},
            "status": "current",
            "subject": {"reference": "Patient/p1"},
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": data}}],
        }
    )


def as_debezium(note_id: str, text: str) -> bytes:
    row = {"note_id": note_id, "note_text": text}
    return orjson.dumps({"op": "c", "after": row, "source": {"lsn": 1}, "ts_ms": 1})


WRAPPERS: dict[str, tuple[Callable[[str, str], bytes], Callable[[str], str]]] = {
    # format: (message of (note id, text), output key of a note id)
    "note": (lambda i, t: orjson.dumps({"note_id": i, "text": t}), lambda i: i),
    "hl7v2": (as_hl7, lambda i: i),
    "fhir": (as_fhir, lambda i: f"DocumentReference/{i}"),
}


def _rate(extract: Callable[[bytes], object], messages: list[bytes], seconds: float) -> float:
    """Messages per second of ``extract`` over ``messages``, looped for about ``seconds``."""
    done = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        for message in messages:
            extract(message)
        done += len(messages)
    return done / (time.perf_counter() - started)


def extraction(texts: list[tuple[str, str]], samples: Path | None) -> dict[str, Any]:
    """Messages/s of extraction alone, per format, on wrapped notes and on public samples."""
    wrapped: dict[str, dict[str, float]] = {}
    cases: dict[str, tuple[Callable[[bytes], object], Callable[[str, str], bytes]]] = {
        "note": (lambda value: parse_note(value, max_chars=10**9), WRAPPERS["note"][0]),
        "hl7v2": (extractor_for("hl7v2"), as_hl7),
        "fhir": (extractor_for("fhir"), as_fhir),
        "mapping (debezium)": (mapping_extractor(DEBEZIUM), as_debezium),
    }
    for name, (extract, wrap) in cases.items():
        messages = [wrap(note_id, text) for note_id, text in texts]
        megabytes = sum(len(m) for m in messages) / 1e6
        rate = _rate(extract, messages, seconds=3.0)
        wrapped[name] = {
            "messages_per_s": round(rate, 1),
            "mb_per_s": round(rate * megabytes / len(messages), 2),
        }
    public: dict[str, dict[str, Any]] = {}
    if samples is not None:
        by_format: dict[str, list[bytes]] = {}
        for path in sorted(samples.iterdir()):
            kind = "cda" if path.suffix == ".ccda" else SAMPLE_FORMATS.get(path.suffix)
            if path.suffix == ".xml":
                kind = "fhir"
            if kind is not None:
                by_format.setdefault(kind, []).append(path.read_bytes())
        for kind, messages in by_format.items():
            extract = extractor_for(kind)

            def safe(message: bytes, extract: Callable[[bytes], object] = extract) -> None:
                try:
                    extract(message)
                except Exception:  # dead letters count as work done
                    return

            public[kind] = {
                "files": len(messages),
                "messages_per_s": round(_rate(safe, messages, seconds=3.0), 1),
            }
    return {"wrapped_notes": wrapped, "public_samples": public}


def _variant(corpus: Corpus, texts: list[tuple[str, str]], kind: str) -> Corpus:
    wrap, key = WRAPPERS[kind]
    return replace(
        corpus,
        events=[wrap(note_id, text) for note_id, text in texts],
        keys=[key(note_id).encode() for note_id, _ in texts],
    )


def end_to_end(
    model: SequenceClassifier, corpus: Corpus, texts: list[tuple[str, str]], rounds: int
) -> dict[str, Any]:
    """Saturation runs of every format per round, interleaved; ratios to ``note`` per round."""
    runs: dict[str, list[float]] = {kind: [] for kind in WRAPPERS}
    cpu: dict[str, list[float]] = {kind: [] for kind in WRAPPERS}
    with tempfile.TemporaryDirectory() as work, LocalKafka.start(workdir=Path(work)) as kafka:
        kinds = list(WRAPPERS)
        for round_index in range(rounds + 1):  # the first round warms the broker up
            shift = round_index % len(kinds)  # each format runs first, second, third in turn
            for kind in kinds[shift:] + kinds[:shift]:
                tagged = [(f"{note_id}-{uuid.uuid4().hex[:6]}", text) for note_id, text in texts]
                variant = _variant(corpus, tagged, kind)
                run = e2e.PipelineRun(kafka.bootstrap_servers, 2, {"input_format": kind})
                cpu_before = time.process_time()
                result = e2e.saturation(run, model, variant)
                cpu_per_note = (time.process_time() - cpu_before) / variant.notes
                if round_index:
                    runs[kind].append(result["notes_per_s"])
                    cpu[kind].append(cpu_per_note)
                print(
                    f"round {round_index} {kind:6s} {result['notes_per_s']:8.1f} notes/s "
                    f"{cpu_per_note * 1000:7.1f} ms CPU/note"
                )
    ratios = {
        kind: [round(a / b, 3) for a, b in zip(runs[kind], runs["note"], strict=True)]
        for kind in WRAPPERS
        if kind != "note"
    }
    cpu_ratios = {
        kind: [round(b / a, 3) for a, b in zip(cpu[kind], cpu["note"], strict=True)]
        for kind in WRAPPERS
        if kind != "note"
    }
    return {
        "notes": corpus.notes,
        "rounds": rounds,
        "notes_per_s": {kind: [round(r, 1) for r in values] for kind, values in runs.items()},
        "ratio_to_note": ratios,
        "median_ratio_to_note": {k: statistics.median(v) for k, v in ratios.items()},
        # the whole process's CPU seconds per note (every thread: preparation, model, clients,
        # and the benchmark's own producer and reader); robust to a busy machine's wall time
        "cpu_ms_per_note": {k: [round(v * 1000, 1) for v in vs] for k, vs in cpu.items()},
        "cpu_throughput_ratio_to_note": cpu_ratios,
        "median_cpu_throughput_ratio_to_note": {
            k: statistics.median(v) for k, v in cpu_ratios.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.formats")
    parser.add_argument("--notes", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--samples", type=Path, help="directory of public EHR sample messages")
    parser.add_argument("--skip-e2e", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    model = load_classifier(load_settings(overrides={"device": "cpu"}))
    corpus = load_corpus(model, notes=args.notes, tag=f"fmt-{uuid.uuid4().hex[:6]}")
    texts = [
        (key.decode(), tidy(orjson.loads(event)["text"]))
        for key, event in zip(corpus.keys, corpus.events, strict=True)
    ]
    counts = [len(split_sentences(text, max_chars=MAX_SENTENCE_CHARS)) for _, text in texts]
    corpus = replace(corpus, sentences_per_note=counts)
    results: dict[str, Any] = {"extraction": extraction(texts, args.samples)}
    print(orjson.dumps(results["extraction"], option=orjson.OPT_INDENT_2).decode())
    if not args.skip_e2e:
        results["end_to_end"] = end_to_end(model, corpus, texts, args.rounds)
        print(orjson.dumps(results["end_to_end"], option=orjson.OPT_INDENT_2).decode())
    args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
