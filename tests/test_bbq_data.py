"""BBQ loading: parsing, biased-answer derivation, exclusions, target_loc metadata, every bad-data case, real data."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
from bbq_fixture import FIXTURE_DIR as FIXTURES  # noqa: E402

from edgeval.errors import DataError
from edgeval.validators.bbq import data, sampling
from edgeval.validators.bbq.download import sha256_file
from edgeval.validators.bbq.parsing import canon, derive_biased, option_groups, tag_parts

REAL = Path(__file__).parents[1].parent / "shared" / "bbq" / "data"


@pytest.fixture(scope="module")
def fixture_data() -> data.BBQData:
    return data.load_bbq(FIXTURES)


def by_key(d: data.BBQData) -> dict[tuple[str, int], Any]:
    return {item.key: item for item in d.items}


# -- the fixture, parsed ----------------------------------------------------------------------------------------
def test_fixture_loads_every_category_present(fixture_data: data.BBQData) -> None:
    assert fixture_data.categories == ("Age", "Race_x_gender", "Religion")
    assert fixture_data.counts() == {"Age": 24, "Race_x_gender": 16, "Religion": 16}
    assert fixture_data.source == FIXTURES
    for name, digest in fixture_data.sha256.items():
        assert digest == hashlib.sha256((FIXTURES / name).read_bytes()).hexdigest()
    assert not fixture_data.pinned and fixture_data.target_loc_file is None


def test_exclusions_counted_per_reason_and_category(fixture_data: data.BBQData) -> None:
    assert fixture_data.excluded == {"no_biased_answer": 4, "two_biased_answers": 4}
    assert fixture_data.excluded_keys["two_biased_answers"] == tuple(("Religion", i) for i in range(16, 20))
    assert fixture_data.excluded_keys["no_biased_answer"] == tuple(("Religion", i) for i in range(20, 24))
    by_cat = fixture_data.excluded_by_category()
    assert by_cat["Age"] == {"no_biased_answer": 0, "two_biased_answers": 0}
    assert by_cat["Religion"] == {"no_biased_answer": 4, "two_biased_answers": 4}
    summary = fixture_data.excluded_summary()
    assert summary["total"] == 8 and summary["keys"]["no_biased_answer"][0] == ["Religion", 20]
    json.dumps(summary)
    assert all(item.biased_idx is not None for item in fixture_data.items)


@pytest.mark.parametrize("key, polarity, biased_text", [
    (("Age", 0), "neg", "The retiree"),              # stereotyped ["old"], neg: the old option
    (("Age", 2), "nonneg", "The teenager"),          # same context, nonneg: the other option
    (("Age", 9), "neg", "The 19-year-old"),          # stereotyped ["nonOld"]: the young option
    (("Age", 11), "nonneg", "The 70-year-old"),
    (("Age", 17), "neg", "The grandmother"),         # tags "Old" / "non-Old"
    (("Race_x_gender", 0), "neg", "Kwame Mensah"),   # "M-Black" vs ["Black", "African American"], at index 2
    (("Race_x_gender", 3), "nonneg", "Lukas Weber"),
    (("Race_x_gender", 13), "neg", "Rosa Delgado"),  # "F_Latino" (underscore spelling)
    (("Religion", 8), "neg", "The Taoist"),          # stereotyped ["Taoist", "Shinto"]
])
def test_hand_checked_biased_answers(fixture_data: data.BBQData, key: tuple[str, int], polarity: str,
                                     biased_text: str) -> None:
    item = by_key(fixture_data)[key]
    assert item.question_polarity == polarity
    assert item.answers[item.biased_idx] == biased_text
    assert item.biased_idx != item.unknown_idx


def test_item_fields(fixture_data: data.BBQData) -> None:
    item = by_key(fixture_data)[("Age", 4)]
    assert (item.unknown_idx, item.label, item.answers[0]) == (0, 0, "Not known")
    assert item.ambiguous and item.question_index == "1" and item.stereotyped_groups == ("old",)
    assert item.answer_groups == ("unknown", "nonOld", "old") and item.subcategory == "None"


# -- normalisation ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, tag, stereotyped, hit", [
    ("Kwame", "M-Black", ["Black"], True),
    ("Kwame", "M-Black", ["F-Black"], False),
    ("Ama", "F-Black", ["F-Black"], True),
    ("Ama", "lowSES-F-Black", ["low SES"], True),
    ("Ama", "lowSES-F-Black", ["lowSES-Black"], True),
    ("Ann", "highSES-F-White", ["Black", "low SES"], False),
    ("kid", "nonOld", ["old"], False),
    ("kid", "nonOld", ["nonOld"], True),
    ("man in a wheelchair", "Disabled", ["disabled"], True),
    ("Dorothy", "trans_F", ["Transgender women", "trans"], True),
    ("Michael", "nonTrans_M", ["Transgender women", "trans"], False),
    ("woman", "woman", ["F"], True),
    ("man", "man", ["F"], False),
    ("Eritrean", "Africa", ["Eritrean", "Kenyan"], True),   # Nationality: the group is in the text
    ("Sri Lankan", "AsiaPacific", ["Indian", "sri-lankan"], True),
])
def test_group_normalisation(text: str, tag: str, stereotyped: list[str], hit: bool) -> None:
    assert bool(option_groups(text, tag) & {canon(g) for g in stereotyped}) is hit


def test_canon_and_tag_parts() -> None:
    assert canon("low SES") == canon("lowSES") == canon("low_ses") == canon("Low-SES") == "lowses"
    assert canon("nonOld") != canon("old")
    assert tag_parts("lowSES-M-Black") == ["lowses", "m", "black"]
    assert tag_parts("Gen-Xer") == ["genxer"]          # a hyphen inside a label is not a separator
    assert tag_parts("M-Native American") == ["m", "nativeamerican"]


def test_derive_biased_counts_matches() -> None:
    groups = [option_groups("a", "old"), option_groups("b", "nonOld"), option_groups("x", "unknown")]
    assert derive_biased("neg", groups, 2, ["old"]) == (0, None)
    assert derive_biased("nonneg", groups, 2, ["old"]) == (1, None)
    assert derive_biased("neg", groups, 2, ["gay"]) == (None, "no_biased_answer")
    assert derive_biased("nonneg", groups, 2, ["old", "nonOld"]) == (None, "two_biased_answers")


# -- choosing categories ----------------------------------------------------------------------------------------
def test_categories_subset_and_order() -> None:
    d = data.load_bbq(FIXTURES, ["Religion", "Age", "Religion"])
    assert d.categories == ("Age", "Religion") and set(d.counts()) == {"Age", "Religion"}
    assert data.load_bbq(FIXTURES, "Religion").categories == ("Religion",)


@pytest.mark.parametrize("categories, pattern", [
    (["Relgion"], r"unknown BBQ category 'Relgion' \(did you mean 'Religion'\? known: Age, "),
    (["age"], r"did you mean 'Age'\?"),
    (["Nationality"], r"'Nationality' was requested but Nationality\.jsonl is not here"),
    ([], r"no BBQ categories requested"),
])
def test_bad_category_requests(categories: list[str], pattern: str) -> None:
    with pytest.raises(DataError, match=pattern):
        data.load_bbq(FIXTURES, categories)


def test_missing_folder_and_folder_without_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        data.load_bbq(tmp_path / "nope")
    (tmp_path / "notes.jsonl").write_text("{}\n")
    with pytest.raises(DataError, match="no BBQ category files here"):
        data.load_bbq(tmp_path)


# -- bad data: each error names file:line -----------------------------------------------------------------------
def _records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / "Age.jsonl").read_text().splitlines()]


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "Age.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _mutated(tmp_path: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    recs = _records()
    change(recs[2])
    return _write(tmp_path, [json.dumps(r) for r in recs])


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda r: r.__setitem__(key, value)


def _tag(index: int, tag: str) -> Callable[[dict[str, Any]], None]:
    return lambda r: r["answer_info"][f"ans{index}"].__setitem__(1, tag)


BAD_RECORDS = {
    "missing field(s): label": lambda r: r.pop("label"),
    "missing field(s): context, question": lambda r: (r.pop("question"), r.pop("context")),
    "unexpected field(s): extra": _set("extra", 1),
    "label must be 0, 1 or 2, got 3": _set("label", 3),
    "label must be 0, 1 or 2, got '2'": _set("label", "2"),
    "category is 'Religion' but the file is 'Age'": _set("category", "Religion"),
    "no option is tagged unknown": _tag(2, "mystery"),
    "2 options are tagged unknown": _tag(0, "unknown"),
    "question_polarity must be neg or nonneg": _set("question_polarity", "negative"),
    "context_condition must be ambig or disambig": _set("context_condition", "ambiguous"),
    "example_id must be a non-negative integer": _set("example_id", "2"),
    "answer_info must have exactly the keys": lambda r: r["answer_info"].pop("ans2"),
    "answer_info.ans1 must be [text, group]": lambda r: r["answer_info"].__setitem__("ans1", ["x"]),
    "additional_metadata.stereotyped_groups must be a list of strings":
        lambda r: r["additional_metadata"].pop("stereotyped_groups"),
    "ambiguous item's label is 0, not the unknown option 2": _set("label", 0),
    "ans1 must be a string": _set("ans1", None),
}


@pytest.mark.parametrize("message", list(BAD_RECORDS))
def test_bad_record_names_file_and_line(tmp_path: Path, message: str) -> None:
    path = _mutated(tmp_path, BAD_RECORDS[message])
    with pytest.raises(DataError, match=re.escape(f"{path}:3: {message}")):
        data.load_bbq(tmp_path)


@pytest.mark.parametrize("line, message", [
    ("{not json", "invalid JSON: Expecting property name enclosed in double quotes"),
    ("[1, 2]", "expected a JSON object, got list"),
])
def test_bad_json_line(tmp_path: Path, line: str, message: str) -> None:
    lines = [json.dumps(r) for r in _records()]
    lines[2] = line
    path = _write(tmp_path, lines)
    with pytest.raises(DataError, match=re.escape(f"{path}:3: {message}")):
        data.load_bbq(tmp_path)


def test_duplicate_example_id(tmp_path: Path) -> None:
    path = _mutated(tmp_path, _set("example_id", 0))
    with pytest.raises(DataError, match=re.escape(f"{path}:3: duplicate example_id 0 in Age (first on line 1)")):
        data.load_bbq(tmp_path)


@pytest.mark.parametrize("content", [b"", b"\n  \n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "Age.jsonl").write_bytes(content)
    with pytest.raises(DataError, match="Age.jsonl: empty file"):
        data.load_bbq(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "Age.jsonl").write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(DataError, match="Age.jsonl: not UTF-8"):
        data.load_bbq(tmp_path)


def test_blank_lines_are_skipped_and_line_numbers_kept(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in _records()]
    _write(tmp_path, [lines[0], "", *lines[1:]])
    assert len(data.load_bbq(tmp_path).items) == 24
    lines.insert(1, "")
    lines[3] = "{bad"
    path = _write(tmp_path, lines)
    with pytest.raises(DataError, match=re.escape(f"{path}:4: invalid JSON")):
        data.load_bbq(tmp_path)


# -- real data (../shared/bbq/data) -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real() -> data.BBQData:
    if not REAL.is_dir():
        pytest.skip(f"real BBQ data not found at {REAL}")
    return data.load_bbq(REAL)


@pytest.mark.real
def test_real_data_loads_checks_and_reports_exclusions(real: data.BBQData) -> None:
    present = ("Age", "Disability_status", "Nationality", "Physical_appearance", "Religion", "Sexual_orientation")
    assert real.categories == present
    assert len(real.items) + sum(real.excluded.values()) == 11_956
    for cat in present:
        assert data.SHA256[f"data/{cat}.jsonl"] == real.sha256[f"{cat}.jsonl"]
        assert data.SHA256[f"data/{cat}.jsonl"] == sha256_file(REAL / f"{cat}.jsonl")
    assert real.pinned
    sums = (REAL.parent / "SHA256SUMS").read_text() if (REAL.parent / "SHA256SUMS").is_file() else ""
    for line in sums.splitlines():
        digest, name = line.split()
        if name.startswith("data/"):
            assert data.SHA256[name] == digest
    print("BBQ exclusions per category:", real.excluded_by_category())
    # Every item of the six present categories has exactly one biased option (agrees with lm-eval-harness).
    assert real.excluded == {"no_biased_answer": 0, "two_biased_answers": 0}
    counts = real.counts()
    assert all(counts[c] == data.EXPECTED_COUNTS[c] for c in present)


@pytest.mark.real
def test_real_nationality_uses_answer_text(real: data.BBQData) -> None:
    items = by_key(real)
    neg, nonneg = items[("Nationality", 1001)], items[("Nationality", 1003)]
    assert neg.answers[neg.biased_idx] == "The Indian family's home"      # tag is "AsiaPacific"
    assert nonneg.answers[nonneg.biased_idx] == "The Iraqi family's home"


@pytest.mark.real
def test_real_groups_and_sample(real: data.BBQData) -> None:
    groups = sampling.group_items(real.items)
    flat = [g for gs in groups.values() for g in gs]
    assert len(flat) == 11_956 // 4 and all(len({m.example_id // 4 for m in g}) == 1 and len(g) == 4 for g in flat)
    sample = sampling.stratified_sample(real.items, 1200, 0)
    cells: dict[tuple[str, str, str], int] = {}
    for item in sample:
        cell = (item.category, item.context_condition, item.question_polarity)
        cells[cell] = cells.get(cell, 0) + 1
    assert len(sample) == 1200 and set(cells.values()) == {50} and len(cells) == 24


def test_fixture_copy_is_loadable_elsewhere(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "Religion.jsonl", tmp_path)
    assert data.load_bbq(tmp_path).categories == ("Religion",)
