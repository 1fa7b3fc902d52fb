"""Log lines: JSON one per line, and never an exception, whatever a value quotes."""

from __future__ import annotations

import base64
import io
import json

from tests.test_pipeline_unit import DLQ, IN, Kit
from worker.logs import configure_logging
from worker.pipeline import EXIT_OK


def test_a_value_orjson_refuses_is_still_written_as_json() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    import structlog

    structlog.get_logger("test").info("odd", resource="DocumentReference/d\ud800", big=2**70)
    line = json.loads(stream.getvalue())
    assert line["event"] == "odd"
    assert line["resource"] == "DocumentReference/d\ud800"
    assert line["big"] == 2**70
    assert "\\ud800" in stream.getvalue()  # escaped: the line itself is valid UTF-8
    stream.getvalue().encode("utf-8")


def test_a_dead_letter_quoting_a_lone_surrogate_id_is_logged_and_the_worker_goes_on() -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    resource = {
        "resourceType": "DocumentReference",
        "id": "d\ud800",
        "status": "current",
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "data": base64.b64encode(b"%PDF-1.4").decode(),
                }
            }
        ],
    }
    kit = Kit(partitions=1)
    kit.broker.append(IN, json.dumps(resource).encode(), key=b"k0")  # "d\ud800" as an escape
    pipeline = kit.pipeline(input_format="fhir")
    assert kit.run(pipeline, lambda: pipeline.delivered >= 1, timeout_s=15) == EXIT_OK
    letters = kit.broker.read(DLQ)
    assert len(letters) == 1
    assert dict(letters[0].headers())["x-biomarker-error-class"] == b"unsupported_content_type"
    assert any(
        json.loads(line)["event"] == "dead_letter" for line in stream.getvalue().splitlines()
    )
