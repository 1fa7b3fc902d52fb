"""Which of many regular expressions can match a text, found in one pass.

Running every lexicon rule on every sentence costs ~200 us a sentence, more than the rest of the
host work together. Most rules need some literal text to match: ``\\btroponins?\\b`` needs
``troponin``, a rule with a value look-ahead needs a digit. :func:`required_literals` reads those
needs off each pattern's parse tree; :class:`Prefilter` finds every needed literal of every rule
with one Aho-Corasick automaton (pyahocorasick; single non-ASCII characters, such as the
decimal digits of other scripts, with a dict) and names the rules whose needs are all present.
Only those run. The test is sound: a rule it leaves out cannot match (a literal a match needs is
absent), so results are the same as running every rule.

Literals are compared case-folded, except those of case-sensitive parts of a pattern
(``(?-i:ALT)``, a pattern compiled without ``re.IGNORECASE``), which are looked for as written:
the automaton searches the text and its case-folded copy, so "ER" of the receptor status rule is
not "er" of every "after". A string made of both kinds is case-folded whole. The folding follows
the regex engine where ``str.casefold`` does not: ``\\d`` needs any Unicode decimal digit, and
the dotless and dotted I fold to "i".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import product
from typing import TYPE_CHECKING, Any

import ahocorasick

if TYPE_CHECKING:  # typeshed describes the parser under its old (deprecated) names
    import sre_constants as constants
    import sre_parse as parser
else:
    from re import _constants as constants
    from re import _parser as parser

__all__ = ["DECIMAL_DIGITS", "Prefilter", "required_literals"]

#: One need: a match contains at least one of these strings.
Need = frozenset[str]
#: An exact string and whether it is case-folded (else: as written).
_Exact = tuple[str, bool]

#: Sets of exact strings larger than this are not multiplied out further.
_MAX_EXACT = 64
#: Character classes of more characters than this need nothing.
_MAX_CLASS = 10
#: Every Unicode decimal digit lies below this code point (the Basic Multilingual Plane and the
#: Supplementary Multilingual Plane); scanning only these keeps the import quick.
_LAST_DIGIT_PLANE_END = 0x20000
#: What ``\\d`` matches in a str pattern: every Unicode decimal digit, not only 0-9.
DECIMAL_DIGITS = frozenset(
    chr(code) for code in range(_LAST_DIGIT_PLANE_END) if chr(code).isdecimal()
)
#: Letters ``re.IGNORECASE`` equates with "i" whose case-folding is not "i": the dotless and
#: the dotted capital I (which folds to two characters). Mapped to "i" before folding.
_FOLD_FIRST = str.maketrans({"\u0131": "i", "\u0130": "i"})


class _Info:
    """What matches of one part of a pattern look like: ``exact``, every string it can match
    (when few), else ``needs``, strings each match contains one of, per need."""

    __slots__ = ("exact", "needs")

    def __init__(self, exact: frozenset[_Exact] | None, needs: list[Need] | None = None) -> None:
        self.exact = exact
        self.needs = needs or []

    def all_needs(self) -> list[Need]:
        if self.exact is None:
            return self.needs
        strings = frozenset(text for text, _folded in self.exact)
        return [strings] if strings and "" not in strings else []


_NOTHING: frozenset[_Exact] = frozenset([("", False)])
_EMPTY = _Info(_NOTHING)
_ANYTHING = _Info(None)


def _exact(text: str, ignore_case: bool) -> _Exact:
    return (text.casefold(), True) if ignore_case else (text, False)


def _joined(first: _Exact, second: _Exact) -> _Exact:
    if first[1] == second[1] or not first[0] or not second[0]:
        return (first[0] + second[0], first[1] or second[1])
    return (first[0].casefold() + second[0].casefold(), True)


def _best(needs: Sequence[Need]) -> Need | None:
    """The most selective need: longest shortest string, then one without a single letter (a
    lone "&" is rarer than a lone "h"), then fewest strings."""
    if not needs:
        return None

    def rarity(need: Need) -> tuple[int, bool, int]:
        shortest = min(map(len, need))
        lone_letter = any(len(text) == 1 and text.isalpha() for text in need)
        return (shortest, not lone_letter, -len(need))

    return max(needs, key=rarity)


def _class(items: Any, ignore_case: bool) -> _Info:
    chars: set[str] = set()
    for op, value in items:
        if op is constants.LITERAL:
            chars.add(chr(value))
        elif op is constants.RANGE and value[1] - value[0] < _MAX_CLASS:
            chars.update(chr(code) for code in range(value[0], value[1] + 1))
        elif op is constants.CATEGORY and value is constants.CATEGORY_DIGIT:
            if len(items) == 1:  # \d alone: a need of its own, however many digits
                return _Info(frozenset((digit, False) for digit in DECIMAL_DIGITS))
            return _ANYTHING
        else:  # negated, wide or a category: anything
            return _ANYTHING
    if len(chars) > _MAX_CLASS:
        return _ANYTHING
    return _Info(frozenset(_exact(char, ignore_case) for char in chars))


def _concatenate(parts: Iterable[_Info]) -> _Info:
    """A sequence: exact strings multiplied out while few, the needs of every part."""
    needs: list[Need] = []
    exact: frozenset[_Exact] | None = _NOTHING
    for part in parts:
        few = exact is not None and part.exact is not None
        if few and len(exact or ()) * len(part.exact or ()) <= _MAX_EXACT:
            exact = frozenset(_joined(a, b) for a, b in product(exact or (), part.exact or ()))
            continue
        if exact is not None:
            needs.extend(_Info(exact).all_needs())
        needs.extend(part.needs)
        exact = part.exact
    if exact is not None and not needs:
        return _Info(exact)
    if exact is not None:
        needs.extend(_Info(exact).all_needs())
    return _Info(None, needs)


def _branch(branches: Iterable[_Info]) -> _Info:
    """Alternatives: every string of each when all are exact, else one need from each."""
    infos = list(branches)
    if all(info.exact is not None for info in infos):
        union = frozenset().union(*(info.exact or () for info in infos))
        if len(union) <= _MAX_EXACT:
            return _Info(union)
    strings: set[str] = set()
    for info in infos:
        best = _best(info.all_needs())
        if best is None:
            return _ANYTHING  # one alternative needs nothing: neither does the whole
        strings |= best
    return _Info(None, [frozenset(strings)])


def _info(nodes: Any, ignore_case: bool) -> _Info:
    return _concatenate(_node(op, value, ignore_case) for op, value in nodes)


def _node(op: Any, value: Any, ignore_case: bool) -> _Info:
    if op is constants.LITERAL:
        return _Info(frozenset([_exact(chr(value), ignore_case)]))
    if op is constants.IN:
        return _class(value, ignore_case)
    if op is constants.SUBPATTERN:
        _group, add_flags, del_flags, body = value
        if add_flags & re.IGNORECASE:
            ignore_case = True
        if del_flags & re.IGNORECASE:
            ignore_case = False
        return _info(body, ignore_case)
    if op is constants.ATOMIC_GROUP:
        return _info(value, ignore_case)
    if op is constants.BRANCH:
        return _branch(_info(branch, ignore_case) for branch in value[1])
    if op in (constants.MAX_REPEAT, constants.MIN_REPEAT, constants.POSSESSIVE_REPEAT):
        low, high, body = value
        inner = _info(body, ignore_case)
        if high == 1 and inner.exact is not None:  # optional or once: still exact
            return _Info(inner.exact | _NOTHING if low == 0 else inner.exact)
        return _Info(None, inner.all_needs()) if low >= 1 else _ANYTHING
    if op is constants.ASSERT:  # a look-around's text is in the string too, just not the match
        return _Info(None, _info(value[1], ignore_case).all_needs())
    if op is constants.AT or op is constants.ASSERT_NOT:
        return _EMPTY  # zero width
    return _ANYTHING  # any character, a negated literal, a group reference


def required_literals(pattern: re.Pattern[str]) -> list[Need]:
    """Needs of every match of ``pattern``: each is a set of strings, one of which every match
    (its look-arounds included) contains. Strings are case-folded where the pattern ignores
    case. An empty list: nothing is needed."""
    tree = parser.parse(pattern.pattern, pattern.flags)
    return _info(tree, bool(pattern.flags & re.IGNORECASE)).all_needs()


def _selective(needs: list[Need]) -> list[Need]:
    """The needs worth looking for: strings of two characters or more, or digits; single
    letters and punctuation are in nearly every sentence."""
    kept = [need for need in needs if min(map(len, need)) >= 2 or need <= DECIMAL_DIGITS]
    best = _best(needs)
    return kept or ([best] if best is not None else [])


class Prefilter:
    """For a list of patterns: which of them can match a text (:meth:`candidates`)."""

    def __init__(self, patterns: Sequence[re.Pattern[str]]) -> None:
        self._always: list[int] = []  # patterns that need nothing: always candidates
        self._required: list[int] = []  # per pattern: the bits of all its needs
        bits: dict[str, dict[int, int]] = {}
        for index, pattern in enumerate(patterns):
            needs = _selective(required_literals(pattern))
            self._required.append((1 << len(needs)) - 1)
            if not needs:
                self._always.append(index)
            for bit, need in enumerate(needs):
                for string in need:
                    found = bits.setdefault(string, {})
                    found[index] = found.get(index, 0) | 1 << bit
        # Single non-ASCII characters (the ~650 decimal digits besides 0-9 that \d matches) are
        # looked up in a dict instead: in the automaton they widen its root and slow its scan ~3x.
        self._wide_chars: dict[str, tuple[tuple[int, int], ...]] = {}
        self._automaton = ahocorasick.Automaton()
        for string, found in bits.items():
            if len(string) == 1 and not string.isascii():
                self._wide_chars[string] = tuple(found.items())
            else:
                self._automaton.add_word(string, tuple(found.items()))
        self._automaton.make_automaton()

    def candidates(self, text: str) -> list[int]:
        """Indexes of the patterns that may match ``text``, in ascending order."""
        seen: dict[int, int] = {}
        folded = (text if text.isascii() else text.translate(_FOLD_FIRST)).casefold()
        # the text as written (case-sensitive needs) and case-folded; NUL is never in a need
        matches = [found for _end, found in self._automaton.iter(f"{text}\0{folded}")]
        if not text.isascii():
            wide = self._wide_chars
            matches.extend(wide[char] for char in {*text, *folded} if char in wide)
        for found in matches:
            for index, bit in found:
                seen[index] = seen.get(index, 0) | bit
        ready = [index for index, bits in seen.items() if bits == self._required[index]]
        return sorted(ready + self._always)
