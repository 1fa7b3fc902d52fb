"""C-CDA extraction (worker.inputs.cda): the public samples, narrative rendering, nonXMLBody,
replacements, hostile XML (entity bombs, external entities, deep nesting) and fuzzing."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.errors import InvalidEvent
from worker.inputs.cda import extract_cda
from worker.inputs.extracted import Extraction

SAMPLES = (
    "fhirconverter__Progress_Note.ccda",
    "fhirconverter__Discharge_Summary.ccda",
    "fhirconverter__Unstructured_Document_reference.ccda",
)

PROGRESS_TITLES = [
    "ALLERGIES AND ADVERSE REACTIONS",
    "ASSESSMENT",
    "CHIEF COMPLAINT",
    "MEDICATIONS",
    "OBJECTIVE DATA",
    "PHYSICAL EXAMINATION",
    "TREATMENT PLAN",
    "PROBLEMS",
    "RESULTS",
    "REVIEW OF SYSTEMS",
    "SUBJECTIVE DATA",
    "VITAL SIGNS",
]

DISCHARGE_TITLES = [
    "ADMISSION DIAGNOSIS",
    "ALLERGIES, ADVERSE REACTIONS, ALERTS",
    "REASON FOR VISIT/CHIEF COMPLAINT",
    "DISCHARGE DIAGNOSIS",
    "DISCHARGE MEDICATIONS",
    "FAMILY HISTORY",
    "Functional Status",
    "PAST MEDICAL HISTORY",
    "HISTORY OF PRESENT ILLNESS",
    "HOSPITAL CONSULTATIONS",
    "HOSPITAL COURSE",
    "HOSPITAL DISCHARGE INSTRUCTIONS",
    "HOSPITAL DISCHARGE PHYSICAL",
    "HOSPITAL DISCHARGE STUDIES SUMMARY",
    "IMMUNIZATIONS",
    "PLAN OF CARE",
    "Problem List",
    "Procedures",
    "REVIEW OF SYSTEMS",
    "Social History",
    "VITAL SIGNS",
]


def _doc(body: str, header: str = "", *, ids: str | None = None) -> bytes:
    """A minimal ClinicalDocument around ``body`` (the content of its ``component``)."""
    if ids is None:
        ids = '<id root="1.2.3" extension="doc2"/><setId root="1.2.3" extension="set1"/>'
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<ClinicalDocument xmlns="urn:hl7-org:v3">'
        f'{ids}<versionNumber value="2"/>{header}<component>{body}</component>'
        "</ClinicalDocument>"
    ).encode()


def _sections(*sections: str) -> bytes:
    return _doc(
        "<structuredBody>"
        + "".join(f"<component><section>{s}</section></component>" for s in sections)
        + "</structuredBody>"
    )


def _non_xml(text: str, attributes: str = "", header: str = "") -> bytes:
    return _doc(f"<nonXMLBody><text {attributes}>{text}</text></nonXMLBody>", header)


def _reason(value: bytes) -> str:
    with pytest.raises(InvalidEvent) as caught:
        extract_cda(value)
    return caught.value.reason


def _titles(text: str) -> list[str]:
    return [part.split("\n", 1)[0] for part in text.split("\n\n") if part and part[0] != " "]


# -- public samples -------------------------------------------------------------------------------


def test_every_sample_file_is_covered(ehr_samples: Path) -> None:
    assert sorted(p.name for p in ehr_samples.glob("*.ccda")) == sorted(SAMPLES)


def test_progress_note(ehr_samples: Path) -> None:
    got = extract_cda((ehr_samples / "fhirconverter__Progress_Note.ccda").read_bytes())
    assert (len(got.notes), len(got.retractions), len(got.skipped)) == (1, 0, 0)
    note = got.notes[0]
    assert note.note_id == "2.16.840.1.113883.19^111199021"
    assert note.version == "1"
    assert note.patient_id == "2.16.840.1.113883.19^12345"
    assert note.encounter_id == "2.16.840.1.113883.19^9937012"
    assert note.note_type == "11506-3^Subsequent evaluation note"
    assert note.note_time == "20050329171504-0500"
    assert note.status is None
    assert note.origin["format"] == "cda"
    assert note.origin["document_id"] == "2.16.840.1.113883.19^999022"
    assert note.origin["set_id"] == note.note_id
    assert note.origin["version_number"] == "1"
    assert [s["title"] for s in note.origin["sections"]] == PROGRESS_TITLES
    assert note.origin["sections"][1] == {"title": "ASSESSMENT", "code": "51848-0"}
    text = note.text
    for title in PROGRESS_TITLES:
        assert text.count(f"{title}\n") == 1
    assert text.startswith("ALLERGIES AND ADVERSE REACTIONS\nSubstance   Reaction\n")
    assert "CHIEF COMPLAINT\nDark stools.\n\nMEDICATIONS\n" in text
    # an ordered list: one numbered line per item
    assert "\n 2. Acute on chronic anemia secondary to #1.\n" in text
    assert text.count(" 1. ") == 3  # ASSESSMENT, OBJECTIVE DATA, PHYSICAL EXAMINATION
    # a table row is one line; inline <content> stays on its line
    assert "\nPenicillin  Nausea\n" in text
    assert "Hand-off Communication: Nurse Florence, RN to Nancy Nightingale, RN" in text
    assert "THORAX & LUNGS: Clear without rhonchi or wheeze." in text
    # entry-level <text> elements are not narrative
    assert "Care Goal: Weight loss from baseline weight 10%" in text
    assert text.count("Care Goal: Weight loss") == 1
    assert "\n\n\n" not in text and text == text.strip()


def test_discharge_summary(ehr_samples: Path) -> None:
    got = extract_cda((ehr_samples / "fhirconverter__Discharge_Summary.ccda").read_bytes())
    assert (len(got.notes), len(got.retractions), len(got.skipped)) == (1, 0, 0)
    note = got.notes[0]
    assert note.note_id == "2.16.840.1.113883.19.5.99999.19^sTT988"
    assert note.version == "1"
    assert note.note_type == "18842-5^Discharge summarization note"
    assert note.encounter_id == "2.16.840.1.113883.19^9937012"
    assert [s["title"] for s in note.origin["sections"]] == DISCHARGE_TITLES
    assert note.origin["sections"][10] == {"title": "HOSPITAL COURSE", "code": "8648-8"}
    text = note.text
    assert text.count("\n\n") >= len(DISCHARGE_TITLES) - 1
    assert "HOSPITAL COURSE\nPatient presented with dark stools" in text
    # <br/> breaks lines inside an item and a plain-text narrative
    assert " 4. Call your physician if you notice:\n    Bleeding or black stools.\n" in text
    assert "\nHEART: Intermittent tachycardia without murmurs or gallops.\n" in text
    # paragraphs are separated, whitespace inside them collapsed like a browser does
    assert "normal brown stool today. On exam she reported lower quadrant" in text
    assert "HISTORY OF PRESENT ILLNESS\nThis patient was only recently discharged" in text
    # a list caption is a line before its list
    assert "Social History\nSmoking Status\n  * Never smoked" in text
    # one section, two tables
    assert "Abdominal CT  Clear evidence of appendicitis." in text
    assert text.count("Appendicitis\n") == 2


def test_unstructured_reference_is_skipped(ehr_samples: Path) -> None:
    path = ehr_samples / "fhirconverter__Unstructured_Document_reference.ccda"
    got = extract_cda(path.read_bytes())
    assert (got.notes, got.retractions) == ([], [])
    assert [s.reason for s in got.skipped] == ["reference_only"]
    assert "2.16.840.1.113883.19.5.99999.19^sTT988" in got.skipped[0].detail


# -- structured body ------------------------------------------------------------------------------


def test_narrative_blocks_render_as_lines() -> None:
    got = extract_cda(
        _sections(
            '<code code="10164-2"/><title>HPI <content>(brief)</content></title><text>'
            "<paragraph><caption>Onset</caption>Pain began <content>two days</content> ago."
            "</paragraph>"
            '<list listType="unordered"><caption>Findings</caption><item>one</item>'
            "<item>two</item></list>"
            "<table><caption>Labs</caption><colgroup><col/></colgroup><thead><tr><th>Test</th>"
            "<th>Value</th></tr></thead><tbody><tr><td>H<sub>2</sub>O</td><td>10<sup>3</sup></td>"
            "</tr></tbody></table>"
            '<paragraph>See <linkHtml href="http://x.test/a">the guide</linkHtml>'
            '<footnoteRef IDREF="f1"/>.<footnote ID="f1">Footnote text.</footnote></paragraph>'
            '<renderMultiMedia referencedObject="img1"><caption>An image</caption>'
            "</renderMultiMedia>"
            "</text>",
            "<title>Empty</title>",
            "<text/>",
        )
    )
    note = got.notes[0]
    assert note.text == (
        "HPI (brief)\n"
        "Onset\n"
        "Pain began two days ago.\n"
        "Findings\n"
        "  * one\n"
        "  * two\n"
        "Labs\n"
        "Test  Value\n"
        "H2O   103\n\n"
        "See the guide.Footnote text.\n\n"
        "Empty"
    )
    assert note.origin["sections"] == [
        {"title": "HPI (brief)", "code": "10164-2"},
        {"title": "Empty", "code": None},
    ]
    assert "http" not in note.text and "An image" not in note.text


def test_nested_sections_follow_their_parent() -> None:
    got = extract_cda(
        _sections(
            "<title>Parent</title><text>Parent text.</text>"
            "<component><section><title>Child A</title><text>A.</text>"
            "<component><section><title>Grandchild</title><text>G.</text></section></component>"
            "</section></component>"
            "<component><section><title>Child B</title><text>B.</text></section></component>",
            "<title>Next</title><text>N.</text>",
        )
    )
    assert got.notes[0].text == (
        "Parent\nParent text.\n\nChild A\nA.\n\nGrandchild\nG.\n\nChild B\nB.\n\nNext\nN."
    )
    assert _titles(got.notes[0].text) == ["Parent", "Child A", "Grandchild", "Child B", "Next"]


def test_sections_without_narrative_are_no_note_text() -> None:
    got = extract_cda(_sections("<title>Only a title</title>", "<text>  </text>"))
    assert got.notes == []
    assert [s.reason for s in got.skipped] == ["no_note_text"]


def test_deep_narrative_nesting_does_not_recurse_forever() -> None:
    depth = 20_000
    deep = "<content>" * depth + "deep text" + "</content>" * depth
    got = extract_cda(_sections(f"<title>T</title><text>{deep}</text>"))
    assert got.notes[0].text == "T\ndeep text"
    nested = "<component><section><title>S</title><text>x</text>" * 2000
    nested += "</section></component>" * 2000
    got = extract_cda(_doc(f"<structuredBody>{nested}</structuredBody>"))
    assert got.notes[0].text.count("S\nx") == 2000


# -- identity, header data and replacements ------------------------------------------------------


def test_identity_falls_back_to_id_without_set_id() -> None:
    got = extract_cda(
        _doc(
            "<structuredBody><component><section><text>x</text></section></component>"
            "</structuredBody>",
            ids='<id root="9.9.9"/>',
        )
    )
    assert got.notes[0].note_id == "9.9.9"
    assert got.notes[0].origin["set_id"] is None


def test_missing_ids_are_not_cda() -> None:
    assert _reason(_doc("<nonXMLBody/>", ids='<id nullFlavor="NI"/>')) == "not_cda"


def test_replacement_with_another_set_id_retracts_the_parent() -> None:
    header = (
        '<relatedDocument typeCode="RPLC"><parentDocument><id root="1.2.3" extension="doc0"/>'
        '<setId root="1.2.3" extension="set0"/><versionNumber value="3"/></parentDocument>'
        '</relatedDocument><relatedDocument typeCode="APND"><parentDocument>'
        '<setId root="1.2.3" extension="other"/></parentDocument></relatedDocument>'
    )
    got = extract_cda(_non_xml("Replacement text.", header=header))
    assert [n.note_id for n in got.notes] == ["1.2.3^set1"]
    [retraction] = got.retractions
    assert retraction.note_id == "1.2.3^set0"
    assert retraction.version == "3"
    assert retraction.reason == "superseded"
    assert retraction.replaced_by == "1.2.3^set1"
    assert retraction.origin["document_id"] == "1.2.3^doc0"


def test_replacement_within_the_same_set_needs_no_retraction() -> None:
    header = (
        '<relatedDocument typeCode="RPLC"><parentDocument><id root="1.2.3" extension="doc1"/>'
        '<setId root="1.2.3" extension="set1"/></parentDocument></relatedDocument>'
    )
    got = extract_cda(_non_xml("v2", header=header))
    assert (len(got.notes), got.retractions) == (1, [])


# -- nonXMLBody -----------------------------------------------------------------------------------


def test_non_xml_body_base64_plain_text() -> None:
    data = base64.b64encode("Line one.\r\nLine twö.\r\n".encode()).decode()
    wrapped = "\n".join(data[i : i + 8] for i in range(0, len(data), 8))
    got = extract_cda(_non_xml(wrapped, 'mediaType="text/plain" representation="B64"'))
    assert got.notes[0].text == "Line one.\nLine twö."
    assert got.notes[0].origin["body"] == "nonXMLBody"
    assert got.notes[0].origin["media_type"] == "text/plain"


def test_non_xml_body_base64_rtf_and_html() -> None:
    rtf = base64.b64encode(rb"{\rtf1\ansi Patient seen.\par Stable.}").decode()
    got = extract_cda(_non_xml(rtf, 'mediaType="text/rtf" representation="B64"'))
    assert got.notes[0].text == "Patient seen.\nStable."
    html = base64.b64encode(b"<p>First.</p><p>Second.</p>").decode()
    got = extract_cda(_non_xml(html, 'mediaType="text/html" representation="B64"'))
    assert got.notes[0].text == "First.\n\nSecond."


def test_non_xml_body_inline_text() -> None:
    got = extract_cda(_non_xml("  Inline note.\n  Next line.  "))
    assert got.notes[0].text == "Inline note.\n  Next line."


@pytest.mark.parametrize(
    ("text", "attributes", "reason"),
    [
        ("not base64 !!", 'mediaType="text/plain" representation="B64"', "undecodable_text"),
        ("/w==", 'mediaType="text/plain" representation="B64"', "undecodable_text"),
        (
            "JVBERi0=",
            'mediaType="application/pdf" representation="B64"',
            "unsupported_content_type",
        ),
        (
            "eJw=",
            'mediaType="text/plain" representation="B64" compression="DF"',
            "unsupported_content_type",
        ),
        ("x", 'representation="XYZ"', "undecodable_text"),
    ],
)
def test_unreadable_body_is_a_dead_letter(text: str, attributes: str, reason: str) -> None:
    assert _reason(_non_xml(text, attributes)) == reason


def test_unreadable_body_next_to_a_retraction_is_a_skip() -> None:
    header = (
        '<relatedDocument typeCode="RPLC"><parentDocument><setId root="1.2.3" extension="old"/>'
        "</parentDocument></relatedDocument>"
    )
    got = extract_cda(
        _non_xml("JVBERi0=", 'mediaType="application/pdf" representation="B64"', header)
    )
    assert got.notes == []
    assert [r.note_id for r in got.retractions] == ["1.2.3^old"]
    assert [s.reason for s in got.skipped] == ["unsupported_content_type"]


def test_empty_non_xml_body_is_no_note_text() -> None:
    assert [s.reason for s in extract_cda(_non_xml("")).skipped] == ["no_note_text"]
    empty = base64.b64encode(b"  \n").decode()
    got = extract_cda(_non_xml(empty, 'representation="B64"'))
    assert [s.reason for s in got.skipped] == ["no_note_text"]


# -- not C-CDA, hostile XML -----------------------------------------------------------------------


BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1"/><component><nonXMLBody><text>&lol4;</text>
</nonXMLBody></component></ClinicalDocument>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1"/><component><nonXMLBody><text>&xxe;</text>
</nonXMLBody></component></ClinicalDocument>"""


@pytest.mark.parametrize(
    "value",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        b"",
        b"MSH|^~\\&|x",
        b'{"resourceType": "DocumentReference"}',
        b"<ClinicalDocument><id root='1'/></ClinicalDocument>",  # no HL7 v3 namespace
        b'<Bundle xmlns="http://hl7.org/fhir"/>',
        _doc("", ids='<id root="1"/>'),  # no body
        b"\xff\xfe\x00<",
    ],
)
def test_not_cda(value: bytes) -> None:
    with pytest.raises(InvalidEvent) as caught:
        extract_cda(value)
    assert caught.value.reason == "not_cda"
    assert "root:" not in caught.value.message  # nothing of /etc/passwd was read


# -- fuzzing --------------------------------------------------------------------------------------

_NARRATIVE_TAGS = [
    *("paragraph", "list", "item", "table", "thead", "tbody", "tr", "th", "td", "caption", "br"),
    *("content", "footnote", "footnoteRef", "linkHtml", "sub", "sup", "renderMultiMedia"),
    *("col", "colgroup", "section", "text", "title", "unknown"),
]


@st.composite
def _markup(draw: st.DrawFn, depth: int = 0) -> str:
    parts = draw(st.lists(st.text(alphabet="ab <>&\n\t", max_size=6), max_size=3))
    out = []
    for part in parts:
        out.append(part.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
        if depth < 4 and draw(st.booleans()):
            tag = draw(st.sampled_from(_NARRATIVE_TAGS))
            attr = draw(st.sampled_from(["", ' listType="ordered"', ' representation="B64"']))
            out.append(f"<{tag}{attr}>{draw(_markup(depth + 1))}</{tag}>")
    return "".join(out)


def _check(value: bytes) -> None:
    try:
        got = extract_cda(value)
    except InvalidEvent:
        return
    assert isinstance(got, Extraction)
    for note in got.notes:
        assert note.text and note.text == note.text.strip()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(value: bytes) -> None:
    _check(value)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_markup(), st.sampled_from(["structuredBody", "nonXMLBody"]))
def test_fuzz_generated_markup(markup: str, body: str) -> None:
    if body == "structuredBody":
        _check(_sections(f"<title>t</title><text>{markup}</text>", markup))
    else:
        _check(_doc(f"<nonXMLBody>{markup}</nonXMLBody>"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_samples(ehr_samples: Path, data: st.DataObject) -> None:
    sample = (ehr_samples / data.draw(st.sampled_from(SAMPLES))).read_bytes()
    start = data.draw(st.integers(0, len(sample)))
    end = data.draw(st.integers(start, min(len(sample), start + 200)))
    _check(sample[:start] + data.draw(st.binary(max_size=20)) + sample[end:])
