"""Literature training sentences where a trained model and the corpus label disagree.

BC2GM and BioRED label a sentence 1 when it holds a gene mention (or a lexicon hit): classes,
loci, cell lines and proteins given as drugs count as genes there, measured hormones and small
molecules often go unmarked, while the label policy decides otherwise. A model trained on
those labels that still disagrees with one points at a label the policy would change or at a
hard case: the sentences worth reading by hand. This lists them for labelling (batch 4 of
``literature_train``): the *train* splits only, sentences already hand-labelled left out, in
the seeded order of :mod:`training.handlabels`. Neither the score nor the corpus label is
shown, so the passes decide under the policy alone.

    python -m training.disagreements --model DIR --count 300 > sheet.tsv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from training.handlabels import DEFAULT_DATA_DIR, first_labellable, order_key, training_labels
from training.sources import Example, read_bc2gm, read_biored


def literature_training_examples(data_dir: Path) -> list[Example]:
    """BC2GM and BioRED *train* sentences with their corpus labels, one per distinct text, not yet
    hand-labelled, in seeded order."""
    labelled = set(training_labels("literature_train"))
    seen: set[str] = set()
    examples = []
    for example in [*read_bc2gm(data_dir), *read_biored(data_dir)]:
        if (
            example.split == "train"
            and example.id not in labelled
            and first_labellable(example.text, seen)
        ):
            examples.append(example)
    return sorted(examples, key=lambda example: order_key(f"train:{example.id}"))


def disagreements(
    examples: Sequence[Example], scores: Sequence[float], threshold: float = 0.5
) -> list[Example]:
    """The examples whose decision at ``threshold`` differs from their corpus label, in order."""
    return [
        example
        for example, score in zip(examples, scores, strict=True)
        if int(score >= threshold) != example.label
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.disagreements", description=__doc__)
    parser.add_argument("--model", type=Path, required=True, help="a checkpoint directory")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--count", type=int, default=300, help="how many to list")
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if not (args.model / "config.json").is_file():
        print(f"error: no checkpoint at {args.model}", file=sys.stderr)
        return 2
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from training.predict import predict_probs

    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSequenceClassification.from_pretrained(args.model).float()
    examples = literature_training_examples(args.data_dir)
    scores = predict_probs(
        model, tokenizer, [e.text for e in examples], batch_size=64, max_length=128
    )
    listed = disagreements(examples, scores, args.threshold)
    print(
        f"{len(examples)} sentences, {len(listed)} disagree with their corpus label",
        file=sys.stderr,
    )
    for number, example in enumerate(listed[: args.count], start=1):
        print(f"{number}\t{example.id}\t{' '.join(example.text.split())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
