"""`edgeval search` on the command line: bad input is one line and an exit code, before any model is built."""
from __future__ import annotations

import pytest

from edgeval.cli import main

CASES = [
    (["--sparsity", "0.5:0.4"], 2, "empty search space: the sparsity range 0.5:0.4 holds no point"),
    (["--methods", ","], 2, "empty search space: name at least one method"),
    (["--sparsity", "0.1:x"], 2, "--sparsity '0.1:x': give LO:HI"),
    (["--methods", "int8", "--sparsity", "0.1:0.5"], 2, "int8 cannot take a sparsity"),
    (["--methods", "magnitude", "--method-set", "wanda.n_samples=4"], 2, "'wanda' is not a step of any searched"),
    (["--methods", "magnitude", "--ray-address", "auto"], 2, "--ray-address needs --executor ray"),
    (["--methods", "int8", "--method-set", "int8.bits=4"], 3, "unknown key 'int8.bits'"),
    (["--methods", "magnitud"], 3, "unknown compression method 'magnitud'"),
    (["--methods", "int8+magnitude"], 3, "impossible chain"),
    (["--objective", "speed"], 2, "Invalid value for '--objective'"),
]


@pytest.mark.parametrize(("args", "code", "message"), CASES)
def test_bad_input_is_one_line_and_an_exit_code(args, code, message, tiny_llama_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", str(tiny_llama_dir), "--out", str(tmp_path / "out"), "-q", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == code
    assert len(err) == 1 and err[0].startswith("edgeval: ") and message in err[0]
    assert not (tmp_path / "out" / "candidates").exists()  # refused before any candidate was built


def test_an_output_folder_inside_the_model_is_refused(tiny_llama_dir, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["search", str(tiny_llama_dir), "--out", str(tiny_llama_dir / "search"), "-q"])
    assert exit_info.value.code == 3 and "output folder would sit in" in capsys.readouterr().err


def test_help_documents_the_exit_codes(capsys):
    with pytest.raises(SystemExit):
        main(["search", "--help"])
    out = capsys.readouterr().out
    assert "Exit codes:" in out and "0  found" in out and "1  none" in out and "--executor [local|ray]" in out
