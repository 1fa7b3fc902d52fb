"""Re-drive without a broker: reading dead letters, filters, the loop limit, flags."""

from __future__ import annotations

import orjson
import pytest

from worker.cli import main
from worker.errors import InvalidEvent, UsageError
from worker.events import Headers, SourceRef
from worker.kafka.dead_letters import (
    REDRIVE_HEADER,
    DeadLetter,
    Filters,
    Outcome,
    decide,
    parse_reason,
    parse_time,
    read_dead_letter,
    redrive_count,
    redriven_headers,
    unknown_reasons,
)
from worker.kafka.redrive import Summary
from worker.notes import Record
from worker.outbound import truncated
from worker.render import dead_letter

ORIGINAL: Headers = [
    ("trace-id", b"\x00\xffabc"),
    ("empty", None),
    ("trace-id", b"second"),
    ("x-biomarker-error-class", b"spoofed"),  # an input header of the same name stays the input's
]


def _letter(
    *,
    reason: str = "schema_violation",
    headers: Headers | None = None,
    partition: int = 2,
    timestamp: int | None = 1_000,
    failed_at: int | None = None,
    cut: bool = False,
) -> DeadLetter:
    """A dead letter exactly as the worker renders it, read back."""
    record = Record(
        source=SourceRef("notes", partition, 41, 900),
        key=b"k",
        value=b"not json",
        headers=list(ORIGINAL if headers is None else headers),
    )
    out = dead_letter(record, InvalidEvent(reason, "why"))
    if cut:
        out = truncated(out, 3)
    dead_headers = list(out.headers or [])
    if failed_at is not None:
        dead_headers = [
            (name, str(failed_at).encode() if name == "x-biomarker-failed-at" else value)
            for name, value in dead_headers
        ]
    letter = read_dead_letter(
        topic="dlq",
        partition=0,
        offset=7,
        timestamp=timestamp,
        key=record.key,
        value=out.value,
        headers=dead_headers,
    )
    assert letter is not None
    return letter


def test_dead_letter_keeps_the_original_headers_and_names_its_source() -> None:
    letter = _letter()
    assert letter.original_headers == ORIGINAL
    assert letter.reason == "schema_violation"
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("notes", 2, 41)
    assert letter.key == b"k" and letter.value == b"not json"
    assert letter.redrives == 0 and not letter.truncated


def test_record_without_the_worker_headers_is_not_a_dead_letter() -> None:
    plain = read_dead_letter(
        topic="dlq", partition=0, offset=1, timestamp=5, key=None, value=b"x", headers=[("a", b"b")]
    )
    assert plain is None
    assert decide(plain, Filters(), max_redrives=3) is Outcome.NOT_DEAD_LETTER


def test_redrive_count_reads_the_last_marker() -> None:
    assert redrive_count([]) == 0
    first = (REDRIVE_HEADER, orjson.dumps({"count": 1}))
    assert redrive_count([first, (REDRIVE_HEADER, orjson.dumps({"count": 2}))]) == 2
    assert redrive_count([(REDRIVE_HEADER, b"garbage")]) is None
    assert redrive_count([(REDRIVE_HEADER, orjson.dumps({"count": -1}))]) is None
    assert redrive_count([(REDRIVE_HEADER, orjson.dumps({"count": True}))]) is None
    assert redrive_count([(REDRIVE_HEADER, None)]) is None


def test_redriven_headers_replace_the_marker_and_count_up() -> None:
    earlier = (REDRIVE_HEADER, orjson.dumps({"count": 1, "dlq_offset": 3}))
    letter = _letter(headers=[("a", b"1"), earlier, ("b", b"2")])
    assert letter.redrives == 1
    headers = redriven_headers(letter, now_ms=123)
    assert headers[:-1] == [("a", b"1"), ("b", b"2")]
    name, value = headers[-1]
    assert name == REDRIVE_HEADER
    assert orjson.loads(value or b"") == {
        "count": 2,
        "dlq_topic": "dlq",
        "dlq_partition": 0,
        "dlq_offset": 7,
        "reason": "schema_violation",
        "at": 123,
    }


def test_loop_limit_truncation_and_filters_decide() -> None:
    marker = (REDRIVE_HEADER, orjson.dumps({"count": 3}))
    assert decide(_letter(), Filters(), max_redrives=3) is Outcome.REDRIVE
    assert decide(_letter(headers=[marker]), Filters(), max_redrives=3) is Outcome.MAX_REDRIVES
    assert decide(_letter(headers=[marker]), Filters(), max_redrives=4) is Outcome.REDRIVE
    garbled: Headers = [(REDRIVE_HEADER, b"?")]
    assert decide(_letter(headers=garbled), Filters(), max_redrives=9) is Outcome.MAX_REDRIVES
    cut = _letter(cut=True)
    assert cut.truncated and cut.original_headers == ORIGINAL
    assert decide(cut, Filters(), max_redrives=3) is Outcome.TRUNCATED
    other = Filters(reasons=frozenset({"not_json"}))
    assert decide(_letter(), other, max_redrives=3) is Outcome.FILTERED


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (Filters(), True),
        (Filters(reasons=frozenset({"schema_violation", "not_json"})), True),
        (Filters(reasons=frozenset({"not_json"})), False),
        (Filters(source_partitions=frozenset({2})), True),
        (Filters(source_partitions=frozenset({0, 1})), False),
        (Filters(source_topics=frozenset({"notes"})), True),
        (Filters(source_topics=frozenset({"other"})), False),
        (Filters(since=1_000), True),  # inclusive
        (Filters(since=1_001), False),
        (Filters(until=1_000), False),  # exclusive
        (Filters(since=999, until=1_001), True),
    ],
)
def test_filters(filters: Filters, expected: bool) -> None:
    assert filters.matches(_letter(timestamp=1_000)) is expected


def test_time_window_falls_back_to_failed_at_header() -> None:
    letter = _letter(timestamp=None, failed_at=5_000)
    assert letter.timestamp == 5_000
    assert Filters(since=4_000, until=6_000).matches(letter)
    assert not Filters(since=5_001).matches(letter)


def test_parse_time_iso_epoch_and_ages() -> None:
    now = 10_000_000_000
    assert parse_time("2h", now_ms=now) == now - 7_200_000
    assert parse_time("30m", now_ms=now) == now - 1_800_000
    assert parse_time("45s", now_ms=now) == now - 45_000
    assert parse_time("7d", now_ms=now) == now - 7 * 86_400_000
    assert parse_time("1w", now_ms=now) == now - 604_800_000
    assert parse_time("1700000000000") == 1_700_000_000_000
    assert parse_time("2024-01-02T03:04:05Z") == 1_704_164_645_000
    assert parse_time("2024-01-02T03:04:05") == 1_704_164_645_000  # no zone: UTC
    assert parse_time("2024-01-02T04:04:05+01:00") == 1_704_164_645_000
    for bad in ("yesterday", "2x", "-2h", ""):
        with pytest.raises(UsageError, match="not a time"):
            parse_time(bad)


def test_parse_reason_and_unknown_reasons() -> None:
    assert parse_reason(" not_json ") == "not_json"
    for bad in ("Not-Json", "", "a b", "x-biomarker"):
        with pytest.raises(UsageError):
            parse_reason(bad)
    assert unknown_reasons(["not_json", "schema_violation"]) == []
    assert unknown_reasons(["schema_violaton"]) == ["schema_violaton"]


def test_summary_counts() -> None:
    summary = Summary("dlq", "g", dry_run=True, read=5)
    summary.counts.update({"skipped_filter": 2, "skipped_max_redrives": 1, "redrive": 2})
    summary.by_reason["not_json"] = 2
    line = summary.as_dict()
    assert line["read"] == 5 and line["matched"] == 3 and line["would_redrive"] == 2
    assert line["redriven"] == 0 and line["skipped_filter"] == 2
    assert line["skipped_max_redrives"] == 1 and line["skipped_truncated"] == 0
    assert line["by_reason"] == {"not_json": 2} and line["stopped"] == "end"


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "yesterday"],
        ["--since", "1h", "--until", "2h"],  # since after until
        ["--reason", "Bad-Reason"],
        ["--dlq-topic", "d", "--to-topic", "d"],  # into the dead-letter topic itself
        ["--group", " "],
        ["--group-id", "g", "--group", "g"],  # the worker's own group
    ],
)
def test_bad_usage_is_one_line_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Each is refused before logging is configured or a client is built."""
    assert main(["redrive", "--bootstrap-servers", "127.0.0.1:1", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("biomarker-worker redrive: error:")


@pytest.mark.parametrize(
    "args",
    [["--max-redrives", "0"], ["--max-records", "-1"], ["--source-partition", "x"], ["--nope"]],
)
def test_bad_flags_are_one_line_exit_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["redrive", *args])
    assert exit_info.value.code == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
