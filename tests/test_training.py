"""Training, evaluation and dataset rules, on a tiny random BERT and hand-made examples."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizer,
)

from training import dataset as dataset_module
from training import train as train_module
from training.dataset import DatasetConfig, build_dataset, data_dir_from
from training.handlabels import Batches, in_batches
from training.lexicon import is_decoy
from training.metrics import binary_metrics, evaluation_report
from training.sources import civic_label
from training.splits import doc_split
from training.train import TrainConfig, epoch_batches, train
from worker.cli import build_dataset as dataset_cli
from worker.cli import evaluate as evaluate_cli
from worker.cli import train as train_cli
from worker.errors import UsageError
from worker.lexicon import find_hits, has_biomarker

_WORDS = (
    "the",
    "patient",
    "was",
    "seen",
    "today",
    "serum",
    "psa",
    "is",
    "high",
    "low",
    "normal",
    "labs",
    "were",
    "unremarkable",
    "hemoglobin",
    "potassium",
    "troponin",
    "tolerated",
    "procedure",
    "well",
    "her2",
    "positive",
    "negative",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="biomarker-worker")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (dataset_cli, train_cli, evaluate_cli):
        module.register(sub)
    return parser


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised two-layer BERT with a 40-word vocabulary, saved like a hub base."""
    path = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *_WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizer(vocab_file=str(path / "vocab.txt"))  # the fast one in transformers 5
    config = BertConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        vocab_size=len(vocab), max_position_embeddings=64,
    )  # fmt: skip
    model = BertForSequenceClassification(config)  # type: ignore[no-untyped-call]
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


_ROWS: list[dict[str, object]] = [
    {"text": "Serum PSA is high.", "label": 1, "source": "a"},
    {"text": "The patient tolerated the procedure well.", "label": 0, "source": "a"},
    {"text": "Hemoglobin low, potassium normal.", "label": 1, "source": "b"},
    {"text": "Labs were unremarkable.", "label": 0, "source": "b"},
]


def test_two_training_steps_give_a_loadable_checkpoint(tiny_base: Path, tmp_path: Path) -> None:
    data = _write(tmp_path / "train.jsonl", _ROWS)
    out = tmp_path / "model"
    args = _parser().parse_args([
        "train", "--base", str(tiny_base), "--train", str(data), "--out", str(out),
        "--max-steps", "2", "--batch-size", "2", "--seed", "1", "--eval", str(data),
        "--threads", "1",
    ])  # fmt: skip
    assert args.handler(args) == 0
    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.id2label == {0: "no_biomarker", 1: "biomarker"}
    assert tokenizer("serum psa")["input_ids"][0] == tokenizer.cls_token_id
    saved = json.loads((out / "tokenizer.json").read_text())
    assert saved["padding"] is None and saved["truncation"] is None
    state = json.loads((out / "training_args.json").read_text())
    assert state["max_steps"] == 2
    assert (out / "checkpoint" / "training_state.pt").is_file()
    # the classifier head moved away from the random initialisation
    base = BertForSequenceClassification.from_pretrained(tiny_base)
    assert not base.classifier.weight.equal(model.classifier.weight)
    resumed = _parser().parse_args([
        "train", "--base", str(tiny_base), "--train", str(data), "--out", str(out),
        "--max-steps", "2", "--batch-size", "2", "--seed", "1", "--resume", "--threads", "1",
    ])  # fmt: skip
    assert resumed.handler(resumed) == 0  # already at step 2: nothing left, still a checkpoint
    again = AutoModelForSequenceClassification.from_pretrained(out)
    assert again.classifier.weight.equal(model.classifier.weight)


def test_resume_after_a_crash_matches_an_uninterrupted_run(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = _write(tmp_path / "train.jsonl", _ROWS)

    def config(out: Path, resume: bool) -> TrainConfig:
        return TrainConfig(
            base=str(tiny_base), train_path=data, out_dir=out, epochs=2, batch_size=2,
            checkpoint_every=1, seed=3, threads=1, resume=resume,
        )  # fmt: skip

    train(config(tmp_path / "straight", resume=False))
    calls = {"n": 0}
    real_step = train_module._step

    def crashing_step(run: Any, batch: list[int]) -> float:
        calls["n"] += 1
        if calls["n"] == 2:  # mid-epoch: epoch 0 has two batches
            raise KeyboardInterrupt
        return real_step(run, batch)

    monkeypatch.setattr(train_module, "_step", crashing_step)
    with pytest.raises(KeyboardInterrupt):
        train(config(tmp_path / "resumed", resume=False))
    monkeypatch.setattr(train_module, "_step", real_step)
    train(config(tmp_path / "resumed", resume=True))
    straight = BertForSequenceClassification.from_pretrained(tmp_path / "straight")
    resumed = BertForSequenceClassification.from_pretrained(tmp_path / "resumed")
    for (name, a), (_, b) in zip(
        straight.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_evaluate_command_reports_per_source(tiny_base: Path, tmp_path: Path) -> None:
    data = _write(tmp_path / "eval.jsonl", _ROWS)
    out = tmp_path / "metrics.json"
    args = _parser().parse_args(
        ["evaluate", "--model", str(tiny_base), "--data", str(data), "--out", str(out)]
    )
    assert args.handler(args) == 0
    report = json.loads(out.read_text())
    assert report["overall"]["n"] == 4
    assert set(report["by_source"]) == {"a", "b"}
    matrix = report["overall"]["confusion_matrix"]
    assert sum(matrix.values()) == 4


def test_bad_paths_are_usage_errors(tmp_path: Path) -> None:
    args = _parser().parse_args(
        ["evaluate", "--model", str(tmp_path), "--data", str(tmp_path / "none.jsonl")]
    )
    with pytest.raises(UsageError):
        args.handler(args)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "x", "label": 2}\n')
    args = _parser().parse_args(
        ["train", "--base", str(tmp_path), "--train", str(bad), "--out", str(tmp_path / "o")]
    )
    with pytest.raises(UsageError, match="label"):
        args.handler(args)
    with pytest.raises(UsageError):
        data_dir_from(str(tmp_path))


def test_metrics_match_a_hand_computed_example() -> None:
    labels = [1, 1, 1, 0, 0, 0, 0, 1]
    probs = [0.9, 0.6, 0.2, 0.7, 0.1, 0.4, 0.5, 0.3]
    # threshold 0.5: predicted 1 for 0.9, 0.6, 0.7, 0.5 -> tp=2, fp=2, fn=2, tn=2
    metrics = binary_metrics(labels, probs, 0.5)
    assert metrics["confusion_matrix"] == {"tp": 2, "fp": 2, "fn": 2, "tn": 2}
    assert metrics["precision"] == 0.5
    assert metrics["recall"] == 0.5
    assert metrics["f1"] == 0.5
    assert metrics["accuracy"] == 0.5
    # threshold 0.65: predicted 1 for 0.9, 0.7 -> tp=1, fp=1, fn=3, tn=3
    metrics = binary_metrics(labels, probs, 0.65)
    assert metrics["precision"] == 0.5
    assert metrics["recall"] == 0.25
    assert metrics["f1"] == round(2 * 0.5 * 0.25 / 0.75, 4)
    report = evaluation_report(labels, probs, ["x"] * 4 + [None] * 4, 0.5)
    assert report["by_source"]["x"]["confusion_matrix"] == {"tp": 2, "fp": 1, "fn": 1, "tn": 0}
    assert report["by_source"]["unknown"]["n"] == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hgb 12.3, Hct 36.", True),
        ("K 4.1, Na 139, Cr 1.1.", True),
        ("ER+/PR+/HER2-", True),
        ("Serum PSA was 4.2 ng/mL.", True),
        ("Troponin was negative times three.", True),
        ("HbA1c is 7.2%.", True),
        ("INR 2.3 on warfarin.", True),
        ("CBC and BMP were ordered.", True),
        ("Potassium 3.6, chloride 103.", True),
        ("Serum calcium was elevated.", True),
        ("The patient tolerated the procedure well.", False),
        ("Labs were unremarkable.", False),
        ("Blood pressure 120/80, pulse 72.", False),
        ("He takes potassium chloride 20 mEq daily.", False),
        ("She presented to the ER with chest pain.", False),
        ("Calcium channel blockers were started.", False),
        ("PT and home exercises were reviewed.", False),
        ("Tumor markers were sent.", False),
        ("Ca2+ influx increased.", False),
        ("Several biomarkers have emerged as crucial indicators.", False),
        ("Her initial CK came out at 922.", True),
        ("Digoxin was 1.3.", True),
        ("Her potassium had risen slightly to 5.5.", True),
        ("Neutrophils 90, bands 7, lymphocytes 27.", True),
        ("Insulin was increased to 10 units.", False),
        ("There was no infection at the fingerstick site.", False),
        # plural, run-together and abbreviated analytes, tests named without a value
        ("Serial hematocrits were stable.", True),
        ("Glucose47mg/dl on arrival.", True),
        ("B12 levels were 216.", True),
        ("Microalbuminuria was present.", True),
        ("Ordered blood lead.", True),
        ("We will do an SGGT and hepatic panel today.", True),
        ("Anticardiolipin antibodies and ASCA were negative.", True),
        ("Hepatitis C antibody was negative.", True),
        ("Urinalysis showed leukocyte esterase and nitrites positive.", True),
        ("His ACE level was normal.", True),
        ("Her estradiol level was 45.", True),
        ("HCT 37.9 and Hgb 12.", True),
        ("The urinalysis was positive for UTI.", True),
        ("Urine drug screen was unremarkable.", True),
        ("Urine pregnancy test was negative.", True),
        ("Guaiac negative stool.", True),
        ("UA showed 2+ protein.", True),
        ("Coagulation panel was normal.", True),
        ("7/6/95, HCT showed a large stroke.", False),
        ("4.  High cholesterol.", False),
        ("History of high blood pressure and high cholesterol.", False),
        ("High cholesterol level of 280.", True),
        ("16.  Vitamin B12.", False),
        ("Vitamin B12 level was 180.", True),
        ("Low vitamin B12 on the last check.", True),
        # autoimmune and coeliac serology, electrophoresis, methylmalonic acid
        ("The double-stranded DNA was negative.", True),
        ("Her RNP and Smith were negative as well.", True),
        ("Endomysial antibodies and tTG were negative.", True),
        ("Her urine immunofixation was not performed.", True),
        ("Methylmalonic acid 385.", True),
        ("Binding to double-stranded DNA requires the domain.", False),
        ("Disc bulge at C3 and C4.", False),
        ("Vitamin D deficiency.", False),
        ("PPD was negative.", False),
        # collisions and decoys
        ("HCT on 03/12/09 showed no bleed.", False),
        ("Micardis HCT once a day.", False),
        ("3.  Estradiol.", False),
        ("The lesion appears to be a cholesterol granuloma.", False),
        ("Humulin insulin 70/30, 44 units at breakfast.", False),
        ("U-tox positive for amphetamines.", True),
        ("High methylmalonic and homocystine levels.", True),
        ("Her serum electrophoresis does not show a monoclonal abnormality.", True),
        ("Rubella immune, RPR nonreactive.", True),
        ("History of hypertension and elevated cholesterol.", False),
        ("Elevated cholesterol of 260.", True),
        ("Cells were treated with oxygen-glucose deprivation.", False),
        ("Hormones influence cholesterol metabolism in macrophages.", False),
        ("MB fraction was 1.0.", True),
        ("Specimens: placenta, cord gases and cord blood.", True),
        ("Arterial blood gases were drawn.", True),
        # hydrochlorothiazide before a dose, head CT with contrast, cells on a Gram stain
        ("MEDICATIONS:  Diovan HCT 80/12.5 mg daily.", False),
        ("Micardis HCT 40/12.5 daily.", False),
        ("Benicar HCT 40/25, one a day.", False),
        ("HCT 36/Hgb 12 on admission.", True),
        ("Lotensin HCT 20 mg/25 mg daily; HCT 31.2 this morning.", True),
        ("A HCT with and without contrast revealed a lesion.", False),
        ("An emergent HCT demonstrated a left MCA infarction.", False),
        ("Initial HCT was unremarkable.", False),
        ("HCT was 31 this morning.", True),
        ("Hgb and Hct were stable.", True),
        ("Gram stain showed many white blood cells but no organisms.", False),
        ("Gram stain negative; WBC 14.2.", True),
        # transaminases, activated clotting time, viral and Lyme titers
        ("Hepatitis C with stable transaminases.", True),
        ("ACT approximately 165 seconds on heparin.", True),
        ("Activated clotting time was checked.", True),
        ("They act within 30 seconds.", False),
        ("HTLV-1 titers were negative.", True),
        ("Lyme titer is pending.", True),
        ("Viral titers in the supernatant rose.", False),
        # potassium in cardioplegia is treatment; high triglycerides as a condition
        ("Cold-blood potassium cardioplegia was given antegrade.", False),
        ("Serum potassium 5.1 after the cardioplegia.", True),
        ("Her sister suffers from high cholesterol and high triglycerides.", False),
        ("High triglycerides of 410 on the last panel.", True),
        ("High triglycerides were 900.", True),
        ("Blood potassium cardioplegic solution was given.", False),
        # immunosuppressant levels written bare, chemistry panels, MYCN, blood bank typing
        ("LABORATORY DATA:  Tacrolimus 3.1 and negative EBV.", True),
        ("Tacrolimus 1 mg p.o. b.i.d.", False),
        ("Tacrolimus 0.1% ointment to the face.", False),
        ("MEDICATIONS:  Tacrolimus 2, mycophenolate 500.", False),
        ("Cyclosporine 100 mg/day.", False),
        ("Labs:  cyclosporine 180.", True),
        ("Her initial chem panel was within normal limits.", True),
        ("Chemistry panel was unremarkable.", True),
        ("Chemistries were within normal limits.", False),
        ("The tumour was not N-Myc amplified.", True),
        ("N-myc downstream regulated gene 1 was studied.", False),
        ("Blood type:  O positive.", True),
        ("Ordered Rh.", True),
        ("She is Rh-negative.", True),
        ("ABO/Rh and antibody screen sent.", True),
        ("Type & screen sent.", True),
        ("Rh immune globulin was given.", False),
        ("Rh type 2 receptor.", False),
        ("Hand dominance:  RH.", False),
        ("Sent for ova and parasites and fecal leukocytes.", True),
        ("Stool leukocytes were negative.", True),
    ],
)
def test_lexicon_rules(text: str, expected: bool) -> None:
    assert has_biomarker(text) is expected


def test_decoys_are_negatives_that_look_like_biomarker_sentences() -> None:
    assert is_decoy("Insulin sliding scale was continued.")
    assert is_decoy("Anterior interbody fusion at C5-C6.")
    assert is_decoy("Labs were unremarkable.")
    assert not is_decoy("K 4.1, Hgb 12.3.")  # a lexicon hit is a positive, not a decoy
    assert not is_decoy("The patient was taken to the recovery room.")


def test_lexicon_hits_carry_spans() -> None:
    text = "Labs: Hgb 12.3 and PSA 4.2."
    spans = {text[hit.start : hit.end] for hit in find_hits(text)}
    assert {"Hgb", "PSA"} <= spans


def test_civic_rules() -> None:
    genes = frozenset({"BRAF", "EGFR"})
    assert civic_label("Responses were durable.", flagged=True, genes=genes) == 1
    assert civic_label("BRAF inhibitors were given.", flagged=False, genes=genes) == 1
    assert civic_label("Tumors carried the T790M change.", flagged=False, genes=genes) == 1
    assert civic_label("Median PFS was 6 months.", flagged=False, genes=genes) == 0
    assert civic_label("XYZ1 was reported.", flagged=False, genes=genes) is None


def test_document_split_is_deterministic_and_by_document() -> None:
    docs = [f"note-{i}" for i in range(2000)]
    first = {doc: doc_split(doc, seed=7, dev=0.1, test=0.2) for doc in docs}
    assert first == {doc: doc_split(doc, seed=7, dev=0.1, test=0.2) for doc in docs}
    share = sum(split == "test" for split in first.values()) / len(docs)
    assert 0.15 < share < 0.25
    assert first != {doc: doc_split(doc, seed=8, dev=0.1, test=0.2) for doc in docs}


def test_epoch_batches_are_seeded_and_complete() -> None:
    lengths = [5, 9, 3, 7, 1, 8, 2, 6, 4, 10]
    batches = epoch_batches(lengths, 3, seed=1, epoch=0)
    assert sorted(i for batch in batches for i in batch) == list(range(10))
    assert batches == epoch_batches(lengths, 3, seed=1, epoch=0)
    assert batches != epoch_batches(lengths, 3, seed=1, epoch=1)


def _mini_corpora(root: Path) -> Path:
    """A hand-written miniature of every corpus, in the shared data layout."""

    def jsonl(rel: str, rows: list[dict[str, Any]]) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))

    mention = [{"start": 0, "end": 4, "text": "BRCA"}]
    jsonl("bc2gm/bc2gm_sentences.jsonl", [
        {"id": "P1T0", "split": "train", "text": "BRCA1 binds DNA.", "gene_mentions": mention},
        {"id": "P2T0", "split": "train", "text": "Serum glucose rose.", "gene_mentions": []},
        {"id": "P3T0", "split": "test", "text": "Rats were housed.", "gene_mentions": []},
    ])  # fmt: skip
    jsonl("biored/biored_sentences.jsonl", [
        {"pmid": "9", "split": "train", "sent_idx": 0, "text": "Cholesterol fell in mice.",
         "entities": [{"type": "ChemicalEntity"}]},
        {"pmid": "9", "split": "train", "sent_idx": 1, "text": "TP53 was mutated.",
         "entities": [{"type": "GeneOrGeneProduct"}]},
        {"pmid": "8", "split": "dev", "sent_idx": 0, "text": "Aspirin was given.",
         "entities": [{"type": "ChemicalEntity"}]},
    ])  # fmt: skip
    jsonl(
        "civicmine/civicmine_train_sentences.jsonl",
        [
            {"id": "1.1", "pmid": 5, "text": "Her2 overexpression predicts poor outcome."},
        ],
    )
    jsonl("civic/civic_evidence_sentences.jsonl", [
        {"evidence_id": "1", "sent_idx": 0, "text": "Patients responded.", "citation_id": "3",
         "mentions_gene_symbol": True, "mentions_variant_name": False},
        {"evidence_id": "1", "sent_idx": 1, "text": "Median OS was 9 months.",
         "citation_id": "3", "mentions_gene_symbol": False, "mentions_variant_name": False},
    ])  # fmt: skip
    (root / "civic" / "01-Aug-2021-GeneSummaries.tsv").write_text("gene_id\tname\n1\tBRAF\n")
    notes = [
        {"note_id": f"mts-{i}", "text": "LABS:  Hgb 12.3, K 4.1.\n\nThe patient tolerated the "
         f"procedure well.  Follow up in {i} weeks."}
        for i in range(40)
    ]  # fmt: skip
    jsonl("mtsamples/mtsamples_notes.jsonl", notes)
    return root


def test_dataset_command_maps_sources_and_splits_by_document(tmp_path: Path) -> None:
    data = _mini_corpora(tmp_path / "data")
    out = tmp_path / "out"
    args = _parser().parse_args(["dataset", "--data-dir", str(data), "--out", str(out)])
    assert args.handler(args) == 0
    rows = {
        split: [json.loads(line) for line in (out / f"{split}.jsonl").read_text().splitlines()]
        for split in ("train", "dev", "test")
    }
    labels = {row["text"]: row["label"] for split in rows.values() for row in split}
    assert labels["BRCA1 binds DNA."] == 1
    assert labels["Serum glucose rose."] == 1  # analyte lexicon on a BC2GM negative
    assert labels["Rats were housed."] == 0
    assert labels["Cholesterol fell in mice."] == 1  # BioRED chemical analyte
    assert labels["Aspirin was given."] == 0
    assert labels["Her2 overexpression predicts poor outcome."] == 1
    assert labels["Patients responded."] == 1  # CIViC gene-symbol flag
    assert labels["Median OS was 9 months."] == 0
    assert labels["LABS:  Hgb 12.3, K 4.1."] == 1
    docs = {split: {row["doc"] for row in split_rows} for split, split_rows in rows.items()}
    assert not docs["train"] & docs["test"]
    assert not docs["train"] & docs["dev"]
    assert not docs["dev"] & docs["test"]
    texts = {split: {row["text"] for row in split_rows} for split, split_rows in rows.items()}
    assert not texts["train"] & texts["test"]  # boilerplate sentences are not trained on twice
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == DatasetConfig().seed
    build_dataset(data, tmp_path / "again", DatasetConfig())
    assert (tmp_path / "again" / "train.jsonl").read_text() == (out / "train.jsonl").read_text()


def test_the_notes_split_stays_whatever_the_seed(tmp_path: Path) -> None:
    """The hand-labelled evaluation notes are drawn from seed 13's split of the MTSamples notes:
    another seed must not move any of them into training."""
    data = _mini_corpora(tmp_path / "data")

    def note_splits(seed: int) -> dict[str, str]:
        out = tmp_path / f"seed{seed}"
        build_dataset(data, out, DatasetConfig(seed=seed))
        return {
            row["doc"]: split
            for split in ("train", "dev", "test")
            for row in map(json.loads, (out / f"{split}.jsonl").read_text().splitlines())
            if row["source"].startswith("mtsamples")
            or row["source"] == dataset_module.HAND_NOTES_SOURCE
        }

    assert note_splits(13) and note_splits(14) == note_splits(13)


def test_hand_labels_replace_corpus_labels_and_count_hand_weight_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hand label wins over the corpus's (literature and notes), under its hand source, and
    each hand-labelled row is trained on ``hand_weight`` times; other rows once."""
    data = _mini_corpora(tmp_path / "data")
    hand = {
        "clinical_train": {},
        "clinical_train_notes": {},
        "literature_train": {"bc2gm:P1T0": 0, "biored:9:0": 0, "bc2gm:P2T0": 1},
    }
    monkeypatch.setattr(dataset_module, "training_labels", lambda name, batches: hand[name])
    weights = {dataset_module.HAND_SOURCE: 3, dataset_module.LITERATURE_HAND_SOURCE: 3}
    build_dataset(data, tmp_path / "out", DatasetConfig(hand_weight=weights))
    rows = [
        json.loads(line) for line in (tmp_path / "out" / "train.jsonl").read_text().splitlines()
    ]
    by_text: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        by_text.setdefault(row["text"], []).append((row["label"], row["source"]))
    assert by_text["BRCA1 binds DNA."] == [(0, "literature_hand")] * 3
    assert by_text["Cholesterol fell in mice."] == [(0, "literature_hand")] * 3
    assert by_text["Serum glucose rose."] == [(1, "literature_hand")] * 3
    assert by_text["TP53 was mutated."] == [(1, "biored")]
    assert len({row["id"] for row in rows}) == len(rows)


def test_whole_note_hand_labels_are_trained_on_once_and_yield_to_the_picked_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sentences of hand-labelled whole notes take their hand label under their own source, once
    per epoch, outside the lexicon-labelled MTSamples quota; a sentence in both clinical sets
    takes the picked set's label and weight."""
    data = _mini_corpora(tmp_path / "data")
    hand = {
        "clinical_train": {"mts-1:68-89": 0},
        "clinical_train_notes": {"mts-0:68-89": 1, "mts-1:68-89": 1},
        "literature_train": {},
    }
    monkeypatch.setattr(dataset_module, "training_labels", lambda name, batches: hand[name])
    config = DatasetConfig()
    config.train_quota["mtsamples"] = 1
    manifest = build_dataset(data, tmp_path / "out", config)
    rows = _train_rows(tmp_path / "out")
    by_text: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        by_text.setdefault(row["text"], []).append((row["label"], row["source"]))
    assert by_text["Follow up in 0 weeks."] == [(1, dataset_module.HAND_NOTES_SOURCE)]
    assert by_text["Follow up in 1 weeks."] == [(0, dataset_module.HAND_SOURCE)] * 2
    assert sum(row["source"] == "mtsamples" for row in rows) == 1  # the quota: lexicon rows only
    assert manifest["hand_labels"] == {
        "clinical_train": 1,
        "clinical_train_notes": 2,
        "literature_train": 0,
    }


def _label_train_notes(monkeypatch: pytest.MonkeyPatch, labels: dict[str, int]) -> None:
    """Hand labels for these train-note sentences only (no other hand-labelled training set)."""
    hand = {"clinical_train": {}, "clinical_train_notes": labels, "literature_train": {}}
    monkeypatch.setattr(dataset_module, "training_labels", lambda name, batches: hand[name])


def test_the_whole_note_quota_keeps_hand_positives_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--clinical-notes-quota`` caps the hand-labelled note sentences by the lexicon rows'
    tiers: positives first (here by hand label, where the lexicon sees no analyte)."""
    data = _mini_corpora(tmp_path / "data")
    _label_train_notes(monkeypatch, {"mts-0:68-89": 0, "mts-1:68-89": 1, "mts-3:68-89": 0})
    base = ["dataset", "--data-dir", str(data)]
    args = _parser().parse_args(
        [*base, "--out", str(tmp_path / "one"), "--clinical-notes-quota", "1"]
    )
    assert args.handler(args) == 0
    kept = [row for row in _train_rows(tmp_path / "one") if row["source"] == "mtsamples_hand_notes"]
    assert [(row["text"], row["label"]) for row in kept] == [("Follow up in 1 weeks.", 1)]
    manifest = json.loads((tmp_path / "one" / "manifest.json").read_text())
    assert manifest["train_quota"]["mtsamples_hand_notes"] == 1
    args = _parser().parse_args(
        [*base, "--out", str(tmp_path / "bad"), "--clinical-notes-quota", "0"]
    )
    with pytest.raises(UsageError, match="--clinical-notes-quota"):
        args.handler(args)


def test_the_whole_note_quota_can_keep_hand_named_hard_negatives_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``--hand-hard-negatives`` (the default) a negative the hand labels give a family (a
    vital sign, a drug given as treatment, ...) joins the lexicon's decoys in the tier after the
    positives, so a tight cap keeps it ahead of ordinary sentences; the manifest records it."""
    data = _mini_corpora(tmp_path / "data")
    _label_train_notes(monkeypatch, {"mts-0:68-89": 0, "mts-1:68-89": 0, "mts-3:68-89": 0})
    asked: list[tuple[str, int | None]] = []
    named = ""

    def hard(name: str, batches: int | None) -> frozenset[str]:
        asked.append((name, batches))
        return frozenset({named})

    monkeypatch.setattr(dataset_module, "training_hard_negatives", hard)
    base = ["dataset", "--data-dir", str(data), "--clinical-notes-quota", "1"]
    # whichever of the three the hand labels name is the one kept, so a seeded draw that
    # ignored the names could match at most one of these
    for note in (0, 1, 3):
        named = f"mts-{note}:68-89"
        out = tmp_path / f"hard-{note}"
        args = _parser().parse_args([*base, "--out", str(out)])  # the default
        assert args.handler(args) == 0
        kept = [row for row in _train_rows(out) if row["source"] == "mtsamples_hand_notes"]
        assert [row["text"] for row in kept] == [f"Follow up in {note} weeks."]
        assert asked == [("clinical_train_notes", None)]
        asked.clear()
    manifest = json.loads((tmp_path / "hard-3" / "manifest.json").read_text())
    assert manifest["hand_hard_negatives"] is True
    args = _parser().parse_args([*base, "--out", str(tmp_path / "off"), "--no-hand-hard-negatives"])
    assert args.handler(args) == 0
    assert asked == []
    manifest = json.loads((tmp_path / "off" / "manifest.json").read_text())
    assert manifest["hand_hard_negatives"] is False


def test_the_hand_named_hard_negatives_can_weigh_more(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--hard-negative-weight N`` trains each hard negative the train notes' hand labels name
    N times per epoch and every other note sentence once; the default keeps each once, as the
    shipped model's data, and the manifest records the weight."""
    data = _mini_corpora(tmp_path / "data")
    _label_train_notes(monkeypatch, {"mts-0:68-89": 0, "mts-1:68-89": 0, "mts-3:68-89": 1})
    monkeypatch.setattr(
        dataset_module, "training_hard_negatives", lambda name, batches: frozenset({"mts-1:68-89"})
    )
    base = ["dataset", "--data-dir", str(data)]
    counts: dict[str, Counter[str]] = {}
    for name, flags in (("default", []), ("twice", ["--hard-negative-weight", "2"])):
        out = tmp_path / name
        args = _parser().parse_args([*base, "--out", str(out), *flags])
        assert args.handler(args) == 0
        counts[name] = Counter(
            row["text"] for row in _train_rows(out) if row["source"] == "mtsamples_hand_notes"
        )
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["hard_negative_weight"] == (2 if flags else 1)
    assert set(counts["default"].values()) == {1}
    assert counts["twice"] == counts["default"] + Counter({"Follow up in 1 weeks.": 1})
    args = _parser().parse_args(
        [*base, "--out", str(tmp_path / "bad"), "--hard-negative-weight", "0"]
    )
    with pytest.raises(UsageError, match="--hard-negative-weight"):
        args.handler(args)


def _train_rows(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]


def test_dataset_command_sets_hand_label_weight_and_batches_per_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--literature-hand-weight`` repeats only the literature hand rows; ``--*-hand-batches``
    passes the batch count to the label reader, and 0 keeps the corpus labels."""
    data = _mini_corpora(tmp_path / "data")
    asked: list[tuple[str, Batches]] = []

    def labels(name: str, batches: Batches) -> dict[str, int]:
        asked.append((name, batches))
        if name == "literature_train" and batches != 0:
            return {"bc2gm:P1T0": 0}
        return {}

    monkeypatch.setattr(dataset_module, "training_labels", labels)
    base = ["dataset", "--data-dir", str(data)]
    once = tmp_path / "once"
    args = _parser().parse_args([*base, "--out", str(once), "--literature-hand-weight", "1"])
    assert args.handler(args) == 0
    assert [row["source"] for row in _train_rows(once) if row["text"] == "BRCA1 binds DNA."] == [
        "literature_hand"
    ]
    # the shipped model's
    assert asked == [("clinical_train", 1), ("clinical_train_notes", None), ("literature_train", 2)]
    asked.clear()
    none = tmp_path / "none"
    cut = [
        "--literature-hand-batches",
        "0",
        "--clinical-hand-batches",
        "2",
        "--clinical-notes-hand-batches",
        "3",
    ]
    args = _parser().parse_args([*base, "--out", str(none), *cut])
    assert args.handler(args) == 0
    assert asked == [("clinical_train", 2), ("clinical_train_notes", 3), ("literature_train", 0)]
    brca = [row for row in _train_rows(none) if row["text"] == "BRCA1 binds DNA."]
    assert [(row["label"], row["source"]) for row in brca] == [(1, "bc2gm")]
    asked.clear()
    chosen = tmp_path / "chosen"
    args = _parser().parse_args([*base, "--out", str(chosen), "--literature-hand-batches", "4,1,2"])
    assert args.handler(args) == 0
    assert ("literature_train", (1, 2, 4)) in asked  # these batches, not the first four
    manifest = json.loads((chosen / "manifest.json").read_text())
    assert manifest["hand_batches"]["literature_train"] == [1, 2, 4]
    for flag, value in (
        ("--clinical-hand-weight", "-1"),
        ("--literature-hand-batches", "-1"),
        ("--literature-hand-batches", "0,2"),
        ("--literature-hand-batches", "2,2"),
        ("--literature-hand-batches", "two"),
        ("--literature-hand-batches", ","),
        ("--literature-hand-batches", "1,9"),  # no batch 9
    ):
        args = _parser().parse_args([*base, "--out", str(tmp_path / "bad"), flag, value])
        with pytest.raises(UsageError, match=flag):
            args.handler(args)


def test_batch_choices_read_as_a_count_or_as_numbers() -> None:
    assert dataset_cli._batches("3", "--x") == 3
    assert dataset_cli._batches("3,", "--x") == (3,)  # batch 3 alone
    assert dataset_cli._batches("4, 1,2", "--x") == (1, 2, 4)


def test_batches_are_the_first_n_or_the_numbers_given() -> None:
    assert [b for b in (1, 2, 3, 4) if in_batches(b, 2)] == [1, 2]
    assert [b for b in (1, 2, 3, 4) if in_batches(b, (1, 2, 4))] == [1, 2, 4]
    assert [b for b in (1, 2, 3, 4) if in_batches(b, None)] == [1, 2, 3, 4]
    assert not any(in_batches(b, 0) for b in (1, 2))


def test_dataset_command_adds_the_note_decoys_unless_told_not_to(tmp_path: Path) -> None:
    """The note-style decoys are on by default, as in the shipped model's data, and the manifest
    says so; ``--no-note-decoys`` leaves them out, as 1.2.0's data did."""
    data = _mini_corpora(tmp_path / "data")
    base = ["dataset", "--data-dir", str(data)]
    for name, flags in (("plain", ["--no-note-decoys"]), ("decoys", [])):
        args = _parser().parse_args([*base, "--out", str(tmp_path / name), *flags])
        assert args.handler(args) == 0
    plain, decoys = (
        {row["text"]: row["label"] for row in _train_rows(tmp_path / name)}
        for name in ("plain", "decoys")
    )
    added = {text: label for text, label in decoys.items() if text not in plain}
    assert added["He received G-CSF daily after his chemotherapy."] == 0
    assert added["It was not N-Myc amplified."] == 1
    assert set(plain) <= set(decoys)
    manifests = [
        json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("plain", "decoys")
    ]
    assert [m["note_decoys"] for m in manifests] == [False, True]


def test_dataset_command_adds_the_literature_decoys_only_when_asked(tmp_path: Path) -> None:
    """The literature-style decoys are off by default, as in the shipped model's data, and the
    manifest says whether they are in."""
    data = _mini_corpora(tmp_path / "data")
    base = ["dataset", "--data-dir", str(data)]
    for name, flags in (("plain", []), ("decoys", ["--literature-decoys"])):
        args = _parser().parse_args([*base, "--out", str(tmp_path / name), *flags])
        assert args.handler(args) == 0
    plain, decoys = (
        {row["text"]: row["label"] for row in _train_rows(tmp_path / name)}
        for name in ("plain", "decoys")
    )
    added = {text: label for text, label in decoys.items() if text not in plain}
    assert added["Both transcripts initiate within the same promoter region."] == 0
    assert added["ICAM-1 has been proposed as a predictor of relapse."] == 1
    assert set(plain) <= set(decoys) and len(added) > 120
    manifests = [
        json.loads((tmp_path / n / "manifest.json").read_text()) for n in ("plain", "decoys")
    ]
    assert [m["literature_decoys"] for m in manifests] == [False, True]


def test_dataset_command_caps_the_mtsamples_train_rows_at_the_quota(tmp_path: Path) -> None:
    """``--mtsamples-quota`` caps the lexicon-labelled MTSamples train rows and the manifest
    records it; without it the shipped model's cap holds."""
    data = _mini_corpora(tmp_path / "data")
    base = ["dataset", "--data-dir", str(data)]
    counts = {}
    for name, flags in (("default", []), ("one", ["--mtsamples-quota", "1"])):
        args = _parser().parse_args([*base, "--out", str(tmp_path / name), *flags])
        assert args.handler(args) == 0
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        counts[name] = manifest["counts"]["train"]["mtsamples"]
        assert manifest["train_quota"]["mtsamples"] == (1 if flags else 20000)
    assert sum(counts["default"].values()) > 1
    assert sum(counts["one"].values()) == 1
    assert counts["one"]["1"] == min(1, counts["default"]["1"])  # positives are kept first
    args = _parser().parse_args([*base, "--out", str(tmp_path / "bad"), "--mtsamples-quota", "0"])
    with pytest.raises(UsageError, match="--mtsamples-quota"):
        args.handler(args)
