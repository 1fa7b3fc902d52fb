"""Sentences to token ids through the fast tokenizer's Rust core, without the Python wrapper.

Tokenising is the largest part of the worker's host-side CPU (about half of it on clinical
notes), so two shortcuts are taken, both giving the same ids as the Hugging Face call:

* the Rust ``Tokenizer`` is called directly (``encode_batch_fast``: no offsets, no per-sentence
  dict building, no padding);
* for BERT's normaliser, sentences of printable ASCII (plus tab, newline, carriage return) skip
  it: on such text it only lower-cases (no control characters to drop, no accents to strip, no
  CJK characters to space out, and whitespace is split on either way), so ``str.lower`` and a copy
  without the normaliser give the same pieces at about 0.65x the cost. Any other sentence takes
  the full path, as does one holding an added token matched on the raw text (``[MASK]``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Anything outside printable ASCII, tab, newline and carriage return.
_NOT_PLAIN = re.compile(r"[^\t\n\r\x20-\x7e]")


class WordpieceEncoder:
    """Token ids of sentences, cut at ``truncate_at`` (special tokens included, as the Hugging
    Face call with ``truncation=True, max_length=truncate_at`` cuts them)."""

    def __init__(self, backend: Any, truncate_at: int) -> None:
        from tokenizers import Tokenizer

        serialized = backend.to_str()
        #: The tokenizer as JSON: enough to build the same encoder in another process.
        self.serialized = serialized
        self._full = Tokenizer.from_str(serialized)
        self._full.no_padding()
        self._full.enable_truncation(max_length=truncate_at)
        self._plain: Any = None
        self._lowercase = False
        spec = json.loads(serialized)
        normalizer = spec.get("normalizer") or {}
        pre_tokenizer = spec.get("pre_tokenizer") or {}
        if normalizer.get("type") == "BertNormalizer" and (
            pre_tokenizer.get("type") == "BertPreTokenizer"
        ):
            self._plain = Tokenizer.from_str(self._full.to_str())
            self._plain.normalizer = None
            self._lowercase = bool(normalizer.get("lowercase", True))
        # Added tokens matched on the raw text ("[MASK]", "[SEP]"): lower-cased first they would
        # not match, so a sentence holding one takes the full path.
        raw_tokens = [
            token["content"]
            for token in spec.get("added_tokens") or []
            if not token.get("normalized", True) and token.get("content")
        ]
        self._raw_token = re.compile("|".join(map(re.escape, raw_tokens))) if raw_tokens else None

    @classmethod
    def for_tokenizer(cls, tokenizer: Any, truncate_at: int) -> WordpieceEncoder | None:
        """An encoder over a Hugging Face fast tokenizer; ``None`` for a slow (Python) one."""
        backend = getattr(tokenizer, "backend_tokenizer", None)
        return None if backend is None else cls(backend, truncate_at)

    @classmethod
    def from_str(cls, serialized: str, truncate_at: int) -> WordpieceEncoder:
        """The encoder of a tokenizer serialised as JSON (:attr:`serialized`)."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(serialized), truncate_at)

    @property
    def skips_normaliser(self) -> bool:
        """True when plain ASCII sentences bypass the normaliser."""
        return self._plain is not None

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        if self._plain is None:
            return [item.ids for item in self._full.encode_batch_fast(list(texts))]
        plain: list[int] = []
        other: list[int] = []
        raw_token = self._raw_token
        for index, text in enumerate(texts):
            needs_full = _NOT_PLAIN.search(text) is not None or (
                raw_token is not None and raw_token.search(text) is not None
            )
            (other if needs_full else plain).append(index)
        if not other:
            return [item.ids for item in self._plain.encode_batch_fast(self._prepared(texts))]
        out: list[list[int]] = [[] for _ in texts]
        fast = self._plain.encode_batch_fast(self._prepared([texts[i] for i in plain]))
        for index, item in zip(plain, fast, strict=True):
            out[index] = item.ids
        full = self._full.encode_batch_fast([texts[i] for i in other])
        for index, item in zip(other, full, strict=True):
            out[index] = item.ids
        return out

    def _prepared(self, texts: Sequence[str]) -> list[str]:
        return [text.lower() for text in texts] if self._lowercase else list(texts)


@dataclass(frozen=True, slots=True)
class Encoded:
    """Token ids of one sentence, already cut to the model's max length."""

    ids: list[int]
    truncated: bool


@dataclass(frozen=True, slots=True)
class SentenceEncoderSpec:
    """What another process needs to tokenise exactly as the model does (picklable)."""

    tokenizer_json: str
    max_length: int
    sep_id: int | None


class SentenceEncoder:
    """Sentences to token ids cut to ``max_length``, the last kept id replaced by the separator
    (what :meth:`worker.model.classifier.SequenceClassifier.encode` returns)."""

    def __init__(self, wordpieces: WordpieceEncoder, max_length: int, sep_id: int | None) -> None:
        self._wordpieces = wordpieces
        self._limit = max_length
        self._sep_id = sep_id

    @classmethod
    def from_spec(cls, spec: SentenceEncoderSpec) -> SentenceEncoder:
        wordpieces = WordpieceEncoder.from_str(spec.tokenizer_json, spec.max_length + 1)
        return cls(wordpieces, spec.max_length, spec.sep_id)

    def spec(self) -> SentenceEncoderSpec:
        return SentenceEncoderSpec(self._wordpieces.serialized, self._limit, self._sep_id)

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        return cut_to_length(self._wordpieces.ids(texts), self._limit, self._sep_id)


def cut_to_length(batch: Sequence[list[int]], limit: int, sep_id: int | None) -> list[Encoded]:
    """Each sentence's ids, those longer than ``limit`` cut and closed with the separator."""
    out: list[Encoded] = []
    for ids in batch:
        if len(ids) > limit:
            cut = ids[: limit - 1]
            cut.append(sep_id if sep_id is not None else ids[-1])
            out.append(Encoded(cut, truncated=True))
        else:
            out.append(Encoded(ids, truncated=False))
    return out
