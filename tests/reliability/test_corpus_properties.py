"""Property (hypothesis): whatever corpus a user hands `embedpipe encode` (random id and text column
types, nulls, duplicates, blank texts, invalid UTF-8, sizes, row groups, dictionary encoding), the
command either refuses it with one `Error:` line, exit code 1 and nothing written, or publishes an
output holding every valid id exactly once; and it refuses exactly the corpora an oracle written
from the README's rules calls invalid (so a legitimate corpus is never refused either)."""

import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from embedpipe.formats.vectors import open_vectors
from tests.helpers import run_cli

ID_TYPES = {"int64": pa.int64(), "int32": pa.int32(), "uint16": pa.uint16(), "string": pa.string(),
            "large_string": pa.large_string(), "string_view": pa.string_view(), "dict_string": "dict",
            "float64": pa.float64(), "bool": pa.bool_(), "list": pa.list_(pa.int64())}
TEXT_TYPES = {"string": pa.string(), "large_string": pa.large_string(), "string_view": pa.string_view(),
              "dict_string": "dict", "binary": pa.binary(), "int64": pa.int64()}
VALID_IDS = {"int64", "int32", "uint16", "string", "large_string", "string_view", "dict_string"}
VALID_TEXTS = {"string", "large_string", "string_view", "dict_string"}
WORDS = ["cat", "dog", "the sun", "Ünïcödé 🙂", "  padded  ", "x" * 300, "日本語", "tab\there", "a\x00b"]


@st.composite
def corpora(draw):
    rows = draw(st.integers(0, 30))
    # Mostly legitimate column types (each invalid one about 1 draw in 8), so both outcomes are common.
    id_kind = draw(st.sampled_from(sorted(VALID_IDS) * 3 + sorted(set(ID_TYPES) - VALID_IDS)))
    text_kind = draw(st.sampled_from(sorted(VALID_TEXTS) * 6 + sorted(set(TEXT_TYPES) - VALID_TEXTS)))
    ids = list(range(rows)) if not draw(st.booleans()) else draw(st.permutations(list(range(0, 3 * rows, 3))))
    if rows and draw(st.integers(0, 9)) == 0:
        ids[draw(st.integers(0, rows - 1))] = ids[0]                          # a duplicate
    if rows and draw(st.integers(0, 9)) == 0:
        ids[draw(st.integers(0, rows - 1))] = None                            # a null id
    texts = [draw(st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=30))) for _ in range(rows)]
    if rows and draw(st.integers(0, 4)) == 0:
        texts[draw(st.integers(0, rows - 1))] = draw(st.sampled_from([None, "", "   ", "\u3000\n"]))
    bad_utf8 = bool(rows) and text_kind in VALID_TEXTS and draw(st.integers(0, 9)) == 0
    return {"ids": ids, "texts": texts, "id_kind": id_kind, "text_kind": text_kind, "bad_utf8": bad_utf8,
            "row_group": draw(st.integers(1, 31)), "empty_text": draw(st.sampled_from(["error", "skip"]))}


def id_array(ids, kind):
    if kind == "dict_string":
        return pa.array([None if i is None else f"d{i}" for i in ids], pa.string()).dictionary_encode()
    arrow = ID_TYPES[kind]
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow) or pa.types.is_string_view(arrow):
        return pa.array([None if i is None else f"d{i}" for i in ids], arrow)
    if kind == "float64":
        return pa.array([None if i is None else float(i) for i in ids], arrow)
    if kind == "bool":
        return pa.array([None if i is None else bool(i % 2) for i in ids], arrow)
    if kind == "list":
        return pa.array([None if i is None else [i] for i in ids], arrow)
    return pa.array(ids, arrow)


def text_array(texts, kind, bad_utf8):
    if bad_utf8:
        raw = pa.array([None if t is None else t.encode() for t in texts[:-1]] + [b"\xff\xfe broken"], pa.binary())
        return raw.view(pa.string())
    if kind == "dict_string":
        return pa.array(texts, pa.string()).dictionary_encode()
    if kind == "int64":
        return pa.array([None if t is None else len(t) for t in texts], pa.int64())
    return pa.array(texts, TEXT_TYPES[kind])


def should_refuse(c) -> bool:
    """The README's rules: ids are unique, non-null ints or strings; texts are strings of valid
    UTF-8; blank texts are refused unless skipped."""
    blank = [t is None or not t.strip() for t in c["texts"]]
    return (c["id_kind"] not in VALID_IDS or c["text_kind"] not in VALID_TEXTS
            or None in c["ids"] or len(set(c["ids"])) != len(c["ids"]) or c["bad_utf8"]
            or (c["empty_text"] == "error" and any(blank)))


def expected_ids(c) -> list:
    keep = [t is not None and t.strip() != "" for t in c["texts"]]
    as_key = (lambda i: f"d{i}") if c["id_kind"] in ("string", "large_string", "string_view", "dict_string") else int
    return sorted(as_key(i) for i, k in zip(c["ids"], keep) if k)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(c=corpora())
def test_encode_refuses_in_one_line_or_publishes_every_valid_id_once(tiny_model_dir, c):
    root = Path(tempfile.mkdtemp(prefix="prop"))
    try:
        table = pa.table({"id": id_array(c["ids"], c["id_kind"]), "text": text_array(c["texts"], c["text_kind"],
                                                                                      c["bad_utf8"])})
        pq.write_table(table, root / "c.parquet", row_group_size=c["row_group"])
        result = run_cli("encode", root / "c.parquet", "--model", tiny_model_dir, "--runner", "local",
                         "--out", root / "v", "--empty-text", c["empty_text"], "--rows-per-shard", 7)
        event("refused" if should_refuse(c) else "published")
        if should_refuse(c):
            assert result.exit_code == 1, result.output
            assert "Traceback" not in result.output
            assert len([line for line in result.output.splitlines() if line.startswith("Error:")]) == 1, result.output
            assert sorted(p.name for p in root.iterdir()) == ["c.parquet"], "a refused run left something"
            return
        assert result.exit_code == 0, result.output
        ids, vectors = open_vectors(root / "v", verify=True).read_all()
        got = ids.to_pylist()
        assert sorted(got) == expected_ids(c)                                 # every valid id, exactly once
        assert len(vectors) == len(got)
        assert sorted(p.name for p in root.iterdir()) == ["c.parquet", "v"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
