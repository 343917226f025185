"""edgeval.settings: a settings dataclass becomes its policy section's JSON schema, and a section becomes settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from edgeval.errors import PolicyError
from edgeval.settings import Settings, defaults_of, parse, schema_of, setting


@dataclass(frozen=True)
class Example(Settings):
    count: int = setting(3, "how many", minimum=1)
    ratio: float | None = setting(0.5, exclusiveMinimum=0)
    flag: bool = False
    name: str | None = None
    mode: Literal["a", "b"] = "a"
    order: Literal[1, 3] | None = None
    tags: list[str] = setting(["x"])
    maybe_tags: list[str] | None = None


def test_schema_of_maps_every_supported_type():
    props = schema_of(Example)["properties"]
    assert props["count"] == {"type": "integer", "minimum": 1, "description": "how many"}
    assert props["ratio"] == {"type": ["number", "null"], "exclusiveMinimum": 0}
    assert props["flag"] == {"type": "boolean"} and props["name"] == {"type": ["string", "null"]}
    assert props["mode"] == {"enum": ["a", "b"], "type": "string"}
    assert props["order"] == {"enum": [1, 3, None], "type": ["integer", "null"]}  # 3.0 is not 3
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["maybe_tags"] == {"type": ["array", "null"], "items": {"type": "string"}}
    assert schema_of(Example)["additionalProperties"] is False


def test_unsupported_types_are_refused_naming_the_field():
    @dataclass(frozen=True)
    class Bad(Settings):
        table: dict = setting({})

    with pytest.raises(TypeError, match="Bad.table"):
        schema_of(Bad)


def test_parse_fills_defaults_and_names_the_bad_key():
    assert parse(Example, {"count": 5}, "ex") == Example(count=5)
    assert defaults_of(Example)["tags"] == ["x"] and Example().tags is not Example().tags  # no shared list
    for section, expected in [({"cont": 1}, "unknown key 'ex.cont' (did you mean 'count'?)"),
                              ({"count": 0}, "'ex.count': 0 is less than the minimum of 1"),
                              ({"mode": "c"}, "'ex.mode': 'c' is not one of ['a', 'b']"),
                              ({"ratio": float("nan")}, "'ex.ratio': nan is not a finite number")]:
        with pytest.raises(PolicyError) as info:
            parse(Example, section, "ex")
        assert str(info.value) == expected


def test_settings_read_like_a_mapping():
    settings = Example(count=2)
    assert settings["count"] == 2 and settings.get("missing", 7) == 7 and "flag" in settings
    assert {**settings}["mode"] == "a" and len(settings) == 8 and dict(settings.items()) == settings.to_json()
    with pytest.raises(KeyError):
        settings["missing"]


@pytest.mark.parametrize(("key", "value"), [("bbq.orders", "3.0"), ("bbq.batch_size", "4.0"),
                                            ("bbq.prior_items", "20.0"), ("latency.runs", "3.0")])
def test_a_whole_number_written_as_a_float_is_refused_in_one_line(key, value, tmp_path, capsys):
    """JSON Schema counts 4.0 as an integer; edgeval's code would get a float (slice indices, range): such values
    were internal errors (exit 4); now the key is named, exit 3."""
    from edgeval.cli import main

    with pytest.raises(SystemExit) as info:
        main(["check", str(tmp_path / "missing.onnx"), "--set", f"{key}={value}", "--report",
              str(tmp_path / "r.json"), "-q"])
    err = capsys.readouterr().err
    assert info.value.code == 3 and f"'{key}': {value} is not of type 'integer'" in err, err
    assert len(err.strip().splitlines()) == 1
