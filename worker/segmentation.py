"""Clinical-aware sentence segmentation that returns character offsets.

``split_sentences(text)`` returns ``[start, end)`` spans.  The spans are in order, do not
overlap, cover every non-whitespace character exactly once and never begin or end with
whitespace, so ``text[start:end]`` is the sentence.  Pure standard library (``re``).

The text is segmented in two passes, both driven by compiled regular expressions:

1. Lines.  A blank line always ends a segment.  A single line break ends one unless the
   line looks wrapped: the next line starts in lower case or the line ends in a comma,
   hyphen or function word ("of", "and", ...).  A line that starts with a list number or
   bullet always starts a segment; a line that ends in ``:`` (a heading alone on its line)
   always ends one.  A line ending in ``.``/``?``/``!`` is judged by pass 2.
2. Punctuation.  Inside a block of joined lines, ``.``/``?``/``!`` followed by whitespace
   ends a segment unless the period belongs to an abbreviation (Dr., b.i.d., e.g., vs., ...),
   an initial, a list number ("1.") or a citation inside an open parenthesis, or the next word
   starts in lower case.  Decimals ("7.2", "1.5 cm") are never candidates because no
   whitespace follows their period.  Colons, semicolons and commas never split.
"""

from __future__ import annotations

import re

#: Recorded in provenance; bump when segmentation rules change what a sentence is.
SEGMENTER_VERSION = "clinical-rules-1"

__all__ = ["split_sentences"]

# Line-break characters as str.splitlines() sees them.
_BRK = r"\n\r\v\f\x1c-\x1e\x85\u2028\u2029"
# One line's content: first to last non-whitespace character of the line.
_LINE = re.compile(rf"\S(?:[^{_BRK}]*\S)?")
_LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"
_BREAK = re.compile(rf"\r\n|[{_BRK}]")
# A list number, letter, roman numeral or bullet that opens a line.
_ITEM = re.compile(
    r"(?:\(?(?:\d{1,3}|[A-Za-z]|[IVXivx]{1,4})[.)](?!\d)|[-*+\u2022\u2023\u2043\u25aa\u25cf\u25e6"
    r"\u25a0\u27a2\u25ba>])(?:\s|$)"
)
# A section heading that opens a line: "Eyes:", "PAST MEDICAL HISTORY:".
_HEADING = re.compile(r"[A-Z][A-Za-z/&() -]{0,40}:(?:\s|$)")
# Line endings that mark a wrapped sentence when the next line starts upper case.
_WRAP_END = re.compile(
    r"(?:[,/&(\u2013]|[A-Za-z]-|\b(?:a|an|and|as|at|by|for|from|in|into|is|of|on|or|than|that|the|to"
    r"|was|were|which|with|who|are|be|but|nor|per|via|his|her|their|its)\b)\Z",
    re.IGNORECASE,
)
# Sentence-final punctuation and closers, with a peek at the next token.
_CAND = re.compile(
    r"(?<![.?!])(?P<p>[.?!]++)[\"'\u201d\u2019)\]}]*+"
    r"(?:(?=(?P<ws>\s+)(?P<nxt>\S{1,40}))"  # ordinary: whitespace, then the next token
    r"|(?<=[A-Za-z)][A-Za-z)]\.)(?=(?P<glued>[A-Z][a-z]+\b))"  # "cells.Patient's"
    r"|(?=[(\[][A-Z]{2}[A-Z ]{2}))"  # editorial note: "therapy.(ABSTRACT TRUNCATED ...)"
)
_BRACKET_REACH = 300
_BRACKET = re.compile(r"[()\[\]]")
_LAST_WS = re.compile(r".*\s", re.DOTALL)
_OPENERS = "([{\"'\u201c\u2018"
_CLOSERS = ")]}\"'\u201d\u2019"
# The number of the list item that opens a segment, after an optional heading.
_ITEM_NUMBER = re.compile(r"(?:[A-Z][A-Za-z/&() -]{0,40}:\s+)?\(?(\d{1,2})[.)]\s")
_LIST_TOKEN = re.compile(r"\(?(?:\d{1,3}|[A-Za-z]|[IVXivx]{1,4})\Z")
_DOTTED = re.compile(r"[A-Za-z]{1,4}(?:\.[A-Za-z]{1,4})+\Z")  # "b.i.d", "e.g", "M.D"


def _words(names: str) -> list[str]:
    return names.split()


# Titles: a capitalised "Dr." or "Mr." never ends a sentence ("MR." and "MS." may: they are
# mitral regurgitation and multiple sclerosis; "ms." is milliseconds).
_TITLES = frozenset(_words("Dr Drs DR DRS Mr Mrs MRS Ms Messrs Prof PROF St Mt"))
# Periods after these never end a sentence, in any case.
_NEVER = frozenset(_words("e.g i.e eg ie vs approx cf viz al fig figs eq eqn ref refs pp"))
# ... nor before a number ("No. 2", "Temp. 99.4").
_BEFORE_NUM = _NEVER | frozenset(_words("no nos ca p temp wt ht bp hr rr t wk wks sec ch resp vol"))
# Abbreviations that may end a sentence: before a capitalised word, a heading or two spaces.
_ABBR = _BEFORE_NUM | frozenset(
    _words(
        "mg mcg ml cc cm mm kg lb lbs oz tab tabs cap caps etc hrs min mins yr yrs mo mos ms"
        " meq mmhg dl q po bid tid qid qd qhs hs prn sig disp inj susp soln gtt gtts"
    )
)
# Words that start sentences but are not names: "by Dr. X. The patient ...".
_STARTERS = frozenset(
    _words(
        "the he she it his her they their we i this that these those there a an in on at of for"
        " with under after before both unfortunately however also then upon once again when while"
        " during since as if no all other our my please"
    )
)
# Capitalised abbreviations of journal titles in citations ("J. Biol. Chem. 275").
_JOURNAL = frozenset(
    _words(
        "biol chem mol exp res environ mutagen immunol natl acad sci proc clin invest pharmacol"
        " biochem biophys physiol genet virol oncol endocrinol hematol pathol neurol surg ann"
        " arch eur jpn dev lett nucl int soc"
    )
)
# Words a capital letter can qualify ("hepatitis C.", "Axis I."): not initials.
_LETTERED = frozenset(
    _words(
        "hepatitis vitamin type group class grade stage axis factor protein kinase phase zone"
        " lead region chain segment complex cell cells antigen site form level strain subtype"
        " domain virus fragment component plan option table figure schedule area unit section"
        " part step"
    )
)


def _is_wrap(text: str, prev_start: int, prev_end: int, next_start: int) -> bool:
    """Whether the line break between two lines sits inside a wrapped sentence."""
    if _ITEM.match(text, next_start):
        return False
    last = text[prev_end - 1]
    if last in ".?!" or (last in _CLOSERS and text[prev_end - 2 : prev_end - 1] in (".", "?", "!")):
        return True  # the punctuation pass decides
    if last in ":;":
        return False
    if text[next_start].islower():
        return True
    if _HEADING.match(text, next_start):
        return False
    if text[next_start].isdigit() and text.find(", ", prev_start, prev_end) >= 0:
        return last.isalpha()  # a lab run wrapped before its value: "..., HDL\n45, PTH 98"
    return _WRAP_END.search(text, max(prev_start, prev_end - 8), prev_end) is not None


def _prev_token(text: str, lo: int, pos: int, limit: int = 80) -> tuple[int, str]:
    """Start and text of the whitespace-delimited token ending at ``pos`` (bounded)."""
    start = pos
    floor = max(lo, pos - limit)
    while start > floor and not text[start - 1].isspace():
        start -= 1
    return start, text[start:pos]


def _skip_space_back(text: str, lo: int, pos: int) -> int:
    while pos > lo and text[pos - 1].isspace():
        pos -= 1
    return pos


def _sentence_start(word: str) -> bool:
    """Whether ``word`` looks like the first word of a sentence ("The", "I", "He")."""
    word = word.lstrip(_OPENERS)
    return word[:1].isupper() and (len(word) == 1 or word[1].islower())


def _is_initial(text: str, seg_start: int, tok_start: int, ws: str, nxt: str) -> bool:
    """Whether a capital letter before a period is an initial ("Pratt, W. B.", "Dr. A. Smith")."""
    if "  " in ws or nxt.lower() in _STARTERS:
        return False  # "seen by Dr. X.  She ...", "Dr. F. Under his care ..."
    end = _skip_space_back(text, seg_start, tok_start)
    _, prev = _prev_token(text, seg_start, end, 40)
    core = prev.lstrip(_OPENERS)
    if len(core) == 2 and core[0].isupper() and core[1] == ".":
        return True  # run of initials
    if core.endswith(",") and len(core) > 2 and core[0].isupper():
        return True  # "Pratt, W."
    word = core.rstrip(".,;:")
    if word in _TITLES:
        return True
    return word[:1].isupper() and word.isalpha() and word.lower() not in _LETTERED


def _is_boundary(text: str, m: re.Match[str], lo: int, seg_start: int, hi: int) -> bool:
    """Decide whether the punctuation match ``m`` ends a sentence."""
    nxt = m.group("nxt") or m.group("glued")
    if nxt is None:
        return True  # "end.(ABSTRACT TRUNCATED ...)"
    tok_start, tok = _prev_token(text, seg_start, m.start())
    end = m.end()
    nxt = nxt.lstrip(_OPENERS) or nxt
    first = nxt[0]
    ws = m.group("ws") or ""
    newline = any(c in _LINE_BREAKS for c in ws)
    if not tok:  # a lone "." or "..."
        return not first.isdigit()
    if "." not in m.group("p"):  # ? or !
        return newline or not first.islower()
    core = tok.lstrip(_OPENERS)
    lower = core.lower()
    if _open_bracket(text, seg_start, end, hi):
        return False  # citation or aside: "(Blood. 2001;98)", "(Kim et al. (1998) J. Biol.)"
    abbrev = (lower in _ABBR and not core.isupper()) or _DOTTED.match(core) is not None
    if first.islower():
        if abbrev or len(lower) < 2:
            return False
        return newline or any(c.isdigit() or c.isupper() for c in nxt[1:])  # "mRNA", "p53"
    if core in _TITLES or lower in _NEVER or (first.isdigit() and lower in _BEFORE_NUM):
        return False
    if newline:
        return True
    if core[:1].isupper() and lower in _JOURNAL:
        return False
    if _LIST_TOKEN.match(tok) and _opens_item(text, lo, seg_start, tok_start, tok):
        return False  # "1. Fever", "DIAGNOSES:  1. Anemia", "II. Left coronary"
    if len(core) == 1 and core.isupper():
        return tok_start == seg_start or not _is_initial(text, seg_start, tok_start, ws, nxt)
    if abbrev:  # "p.o. The", "kg.  NECK:" end a sentence; "i.p. LPS" does not
        return "  " in ws or _sentence_start(nxt) or nxt.endswith(":")
    return True


def _open_bracket(text: str, seg_start: int, end: int, hi: int) -> bool:
    """Whether ``end`` sits inside a bracket opened shortly before (in this segment) and
    closed shortly after: a citation or an aside, not a sentence end."""
    start = max(seg_start, end - _BRACKET_REACH)
    opened = text.count("(", start, end) + text.count("[", start, end)
    if opened == 0:
        return False
    depth = opened - text.count(")", start, end) - text.count("]", start, end)
    if depth <= 0:
        return False
    target = depth - 1
    for b in _BRACKET.finditer(text, end, min(hi, end + _BRACKET_REACH)):
        depth += 1 if b.group() in "([" else -1
        if depth == target:
            return True
    return False


def _opens_item(text: str, lo: int, seg_start: int, tok_start: int, tok: str) -> bool:
    """Whether a list-marker token opens an item: the first one after a colon
    ("DIAGNOSES:  1. Fever"), one at the start of its line, or a number at the start of its
    segment ("... fever.  2. Anemia")."""
    pos = _skip_space_back(text, seg_start, tok_start)
    if pos > seg_start:
        return text[pos - 1] == ":" and tok.lstrip("(") in ("1", "a", "A", "i", "I")
    return tok[-1].isdigit() or pos <= lo or text[pos - 1] in _LINE_BREAKS


def _inline_item(text: str, m: re.Match[str], seg_start: int) -> int:
    """Start of list number ``n + 1`` inside item ``n`` ("1. Fever 2. Cough"), else -1."""
    start = m.start()
    nxt = m.group("nxt")
    if start <= seg_start or not text[start - 1].isdigit() or not nxt or not nxt[0].isupper():
        return -1
    tok_start, tok = _prev_token(text, seg_start, start, 3)
    opened = _ITEM_NUMBER.match(text, seg_start)
    if tok_start <= seg_start or not tok.isdigit() or opened is None:
        return -1
    return tok_start if int(tok) == int(opened.group(1)) + 1 else -1


def _split_block(text: str, lo: int, hi: int, out: list[tuple[int, int]]) -> None:
    """Append the sentence spans of ``text[lo:hi]`` (stripped, non-empty) to ``out``."""
    seg_start = lo
    for m in _CAND.finditer(text, lo, hi):
        end = m.end()
        if end >= hi:
            continue
        item = _inline_item(text, m, seg_start)
        if item >= 0:  # "1. Fever 2. Cough": the next item starts before its number
            out.append((seg_start, _skip_space_back(text, seg_start, item)))
            seg_start = item
            continue
        if not _is_boundary(text, m, lo, seg_start, hi):
            continue
        nxt_start = m.start("nxt") if m.group("nxt") is not None else end
        out.append((seg_start, end))
        seg_start = nxt_start
    out.append((seg_start, hi))


def _hard_split(text: str, spans: list[tuple[int, int]], max_chars: int) -> list[tuple[int, int]]:
    """Cut spans longer than ``max_chars`` at the last whitespace before the limit."""
    out: list[tuple[int, int]] = []
    for start, end in spans:
        s = start
        while end - s > max_chars:
            limit = s + max_chars
            ws = _LAST_WS.match(text, s + 1, limit + 1)
            cut = ws.end() - 1 if ws is not None else s
            if cut > s:
                piece_end = cut
                while text[piece_end - 1].isspace():
                    piece_end -= 1
                nxt = cut
            else:  # no whitespace in reach: cut inside the word
                piece_end = nxt = limit
            while text[nxt].isspace():
                nxt += 1
            out.append((s, piece_end))
            s = nxt
        out.append((s, end))
    return out


def split_sentences(text: str, *, max_chars: int | None = None) -> list[tuple[int, int]]:
    """[start, end) character offsets of each sentence of `text`, in order.

    ``max_chars`` (default ``None``: no limit) bounds the length of every span: a longer
    sentence is cut at the last whitespace at or before ``start + max_chars`` (inside a word
    when there is none), e.g. to keep model inputs short.  It must be at least 1.
    """
    if max_chars is not None and max_chars < 1:
        raise ValueError("max_chars must be at least 1")
    spans: list[tuple[int, int]] = []
    block_start = -1
    prev_start = prev_end = 0
    for line in _LINE.finditer(text):
        start, end = line.span()
        if block_start < 0:
            block_start = start
        elif len(_BREAK.findall(text, prev_end, start)) > 1 or not _is_wrap(
            text, prev_start, prev_end, start
        ):
            _split_block(text, block_start, prev_end, spans)
            block_start = start
        prev_start, prev_end = start, end
    if block_start >= 0:
        _split_block(text, block_start, prev_end, spans)
    if max_chars is not None:
        spans = _hard_split(text, spans, max_chars)
    return spans
