"""A pipeline spec that is not a text file (binary, latin-1, control characters, NUL, gzip) is one
line naming the file, from `run` and `run --dry-run` and from load_spec; UTF-8 with a BOM and
UTF-16 are read as text."""

import pytest

from embedpipe.errors import EmbedpipeError
from embedpipe.pipeline.schema import load_spec
from tests.helpers import assert_one_line_error, run_cli, snapshot, write_corpus

SPEC_TEXT = "encode:\n  corpus: c.parquet\n"
BINARY_SPECS = {
    "random bytes": bytes(range(256)) * 4,
    "a parquet file": None,                                      # written in the test
    "latin-1 text": "encode:\n  corpus: café.parquet\n".encode("latin-1"),
    "a control character": b"encode:\n  corpus: a\x07b.parquet\n",
    "NUL in the middle": SPEC_TEXT.encode() + b"\x00" + SPEC_TEXT.encode(),
    "gzip": b"\x1f\x8b\x08\x00" + bytes(60),
}


@pytest.mark.parametrize("case", list(BINARY_SPECS))
def test_a_spec_that_is_not_text_is_one_line(case, tmp_path):
    spec = tmp_path / "spec.yaml"
    if BINARY_SPECS[case] is None:
        write_corpus(spec)
    else:
        spec.write_bytes(BINARY_SPECS[case])
    before = snapshot(tmp_path)
    for extra in ([], ["--dry-run"]):
        assert_one_line_error(run_cli("run", spec, *extra), "spec.yaml")
    with pytest.raises(EmbedpipeError, match="spec.yaml"):
        load_spec(spec)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_a_spec_with_a_byte_order_mark_is_text(encoding, tmp_path):
    """Accepted, not refused: Windows editors write these, and the text is unambiguous."""
    write_corpus(tmp_path / "c.parquet")
    (tmp_path / "spec.yaml").write_bytes(f"output_dir: out\n{SPEC_TEXT}".encode(encoding))
    spec = load_spec(tmp_path / "spec.yaml")
    assert spec.output_dir == tmp_path / "out" and spec.stages() == ["encode"]
    assert spec.encode.corpus == str(tmp_path / "c.parquet")       # the BOM did not end up in a key or value
