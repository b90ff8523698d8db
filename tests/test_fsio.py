"""fsio, the only writer: a file or directory appears whole or not at all, one writer holds a lock,
and check_output refuses an output that would destroy an input before anything is touched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from embedpipe import fsio
from embedpipe.errors import BadInput, EmbedpipeError
from embedpipe.fsio import (
    FileLock,
    atomic_path,
    check_output,
    check_output_dir,
    file_sha256,
    read_json,
    staged_dir,
    write_json_atomic,
)
from tests.helpers import entries, snapshot

REPO = Path(__file__).resolve().parents[1]


class Interrupted(Exception):
    """Raised inside a block to stand for any failure while writing."""


# --- atomic_path ------------------------------------------------------------------------------------------

def test_atomic_path_publishes_the_file_and_leaves_nothing_else(tmp_path):
    with atomic_path(tmp_path / "out.txt") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".out.txt.") and tmp.name.endswith(".tmp")
        tmp.write_text("done")
        assert not (tmp_path / "out.txt").exists()       # visible only once the block ends
    assert (tmp_path / "out.txt").read_text() == "done"
    assert entries(tmp_path) == {"out.txt"}


@pytest.mark.parametrize("earlier", [None, "the earlier result"])
def test_atomic_path_leaves_nothing_on_an_error_and_keeps_an_earlier_file(earlier, tmp_path):
    if earlier is not None:
        (tmp_path / "out.txt").write_text(earlier)
    with pytest.raises(Interrupted):
        with atomic_path(tmp_path / "out.txt") as tmp:
            tmp.write_text("half")
            raise Interrupted
    assert entries(tmp_path) == (set() if earlier is None else {"out.txt"})
    if earlier is not None:
        assert (tmp_path / "out.txt").read_text() == earlier


def test_json_is_written_atomically_and_read_back_only_as_an_object(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"n": 3, "path": tmp_path})
    assert read_json(tmp_path / "a.json") == {"n": 3, "path": str(tmp_path)}
    assert entries(tmp_path) == {"a.json"}
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / "broken.json").write_text('{"n": ')
    for path in ("list.json", "broken.json", "missing.json"):
        assert read_json(tmp_path / path) is None


def test_file_sha256_is_the_checksum_of_the_bytes(tmp_path):
    data = os.urandom(3 << 20)                              # more than one 1 MiB read
    (tmp_path / "blob").write_bytes(data)
    assert file_sha256(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


# --- staged_dir -------------------------------------------------------------------------------------------

def _old_output(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text('{"old": true}')
    return out


def test_staged_dir_replaces_the_output_in_one_step(tmp_path):
    out = _old_output(tmp_path)
    with staged_dir(out) as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".out.staging-")
        (staging / "result.json").write_text('{"new": true}')
        assert (out / "result.json").read_text() == '{"old": true}'   # untouched until the block ends
    assert (out / "result.json").read_text() == '{"new": true}'
    assert entries(tmp_path) == {"out"} and entries(out) == {"result.json"}


@pytest.mark.parametrize("with_earlier_output", [True, False])
def test_staged_dir_keeps_the_old_output_on_an_error(with_earlier_output, tmp_path):
    if with_earlier_output:
        _old_output(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(Interrupted):
        with staged_dir(tmp_path / "out") as staging:
            (staging / "result.json").write_text("half")
            raise Interrupted
    assert snapshot(tmp_path) == before


def test_a_failed_rename_puts_the_old_output_back(tmp_path, monkeypatch):
    """The publishing rename is the one step a crash can interrupt; fsio routes it through
    rename_into_place so this fault can be injected."""
    _old_output(tmp_path)
    before = snapshot(tmp_path)

    def failing_rename(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fsio, "rename_into_place", failing_rename)
    with pytest.raises(OSError, match="disk full"):
        with staged_dir(tmp_path / "out") as staging:
            (staging / "result.json").write_text('{"new": true}')
    assert snapshot(tmp_path) == before


# --- FileLock ---------------------------------------------------------------------------------------------

def test_a_second_holder_is_refused_at_once_with_the_busy_message(tmp_path):
    lock = tmp_path / ".out.lock"
    with FileLock(lock, "another run is writing out"):
        with pytest.raises(EmbedpipeError, match="^another run is writing out$"):
            with FileLock(lock, "another run is writing out"):
                pass
    with FileLock(lock, "busy"):                            # released when the first block ended
        pass
    assert entries(tmp_path) == {".out.lock"}


def test_a_lock_made_to_be_removed_leaves_no_file(tmp_path):
    with FileLock(tmp_path / "sub" / ".out.lock", "busy", remove=True):
        assert entries(tmp_path / "sub") == {".out.lock"}
    assert entries(tmp_path / "sub") == set()


HOLD_LOCK = """
import sys, time
from embedpipe.fsio import FileLock
with FileLock(sys.argv[1], "busy"):
    print("held", flush=True)
    time.sleep(120)
"""


def test_a_lock_held_by_another_process_is_refused_and_freed_when_it_is_killed(tmp_path):
    lock = tmp_path / ".out.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(lock)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(EmbedpipeError, match="another embedpipe run"):
            with FileLock(lock, "another embedpipe run holds it"):
                pass
    finally:
        holder.kill()                                       # SIGKILL: no Python cleanup runs in the holder
        holder.wait(timeout=30)
        holder.stdout.close()
    with FileLock(lock, "busy"):                            # the kernel released the flock
        pass


# --- check_output -----------------------------------------------------------------------------------------

@pytest.fixture
def layout(tmp_path, monkeypatch):
    """tmp/corpus.parquet (a file), tmp/vectors/ (a directory with a shard), tmp/note.txt, cwd tmp/work."""
    (tmp_path / "corpus.parquet").write_bytes(b"PAR1")
    (tmp_path / "vectors").mkdir()
    (tmp_path / "vectors" / "part-00000.parquet").write_bytes(b"PAR1")
    (tmp_path / "note.txt").write_text("a file\n")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    return tmp_path


REFUSED = [
    # (output, inputs, what the refusal says); paths are relative to the layout's root unless they start with "./"
    ("corpus.parquet", {"corpus": "corpus.parquet"}, "is the corpus"),
    ("work/../corpus.parquet", {"corpus": "corpus.parquet"}, "is the corpus"),
    ("vectors", {"vectors": "vectors"}, "is the vectors"),
    ("vectors/index", {"vectors": "vectors"}, "lies inside the vectors"),
    ("vectors/a/b/index", {"vectors": "vectors"}, "lies inside the vectors"),
    ("corpus.parquet/out", {"corpus": "corpus.parquet"}, "lies inside the corpus"),
    ("", {"vectors": "vectors"}, "holds the vectors {root}/vectors; replacing it would delete it"),
    ("vectors", {"shard": "vectors/part-00000.parquet"}, "holds the shard"),
    ("work", {"corpus": "corpus.parquet"}, "holds the working directory"),
    ("./.", {"corpus": "corpus.parquet"}, "holds the working directory"),
    ("./..", {}, "holds the working directory"),
    ("note.txt/out", {}, "cannot be created: {root}/note.txt is not a directory"),
    ("note.txt/a/b/out", {}, "cannot be created: {root}/note.txt is not a directory"),
    ("s3://bucket/out", {}, "is a URL; outputs are local paths"),
    ("file://{root}/out", {}, "is a URL"),
    ("corpus.parquet", {"corpus": "file://{root}/corpus.parquet"}, "is the corpus file://"),
    ("vectors/index", {"vectors": "file://localhost{root}/vectors"}, "lies inside the vectors"),
    ("out", {"queries": None, "model": "", "vectors": "vectors", "corpus": "out/corpus.parquet"}, "holds the corpus"),
]


def _place(text: str, root: Path) -> str:
    text = text.replace("{root}", str(root))
    if "://" in text or text.startswith("./"):
        return text
    return str(root / text) if text else str(root)


@pytest.mark.parametrize("out, inputs, says", REFUSED,
                         ids=[f"{o or '<root>'} vs {list(i.values())}" for o, i, _ in REFUSED])
def test_check_output_refuses(out, inputs, says, layout):
    before = snapshot(layout)
    with pytest.raises(BadInput) as refused:
        check_output(_place(out, layout), {k: None if v is None else _place(v, layout) if v else v
                                           for k, v in inputs.items()})
    assert says.replace("{root}", str(layout)) in str(refused.value)
    assert snapshot(layout) == before


ACCEPTED = [
    ("corpus.vectors", {"corpus": "corpus.parquet"}),
    ("vectors2", {"vectors": "vectors"}),                    # a shared prefix is not nesting
    ("vector", {"vectors": "vectors"}),
    ("new/deeper/out", {"vectors": "vectors"}),              # missing parents are created later, not now
    ("work/out", {"corpus": "corpus.parquet"}),              # inside the working directory is fine
    ("out", {"corpus": "s3://bucket/corpus.parquet", "queries": None, "model": ""}),
]


@pytest.mark.parametrize("out, inputs", ACCEPTED, ids=[o for o, _ in ACCEPTED])
def test_check_output_accepts_and_touches_nothing(out, inputs, layout):
    before = snapshot(layout)
    given = _place(out, layout)
    assert check_output(given, {k: _place(v, layout) if v else v for k, v in inputs.items()}) == Path(given)
    assert snapshot(layout) == before


def test_symlinks_are_followed_both_ways(layout):
    (layout / "link-to-vectors").symlink_to(layout / "vectors", target_is_directory=True)
    (layout / "link-to-root").symlink_to(layout, target_is_directory=True)
    vectors = {"vectors": str(layout / "vectors")}
    with pytest.raises(BadInput, match="is the vectors"):
        check_output(layout / "link-to-vectors", vectors)
    with pytest.raises(BadInput, match="lies inside the vectors"):
        check_output(layout / "link-to-root" / "vectors" / "index", vectors)
    with pytest.raises(BadInput, match="is the vectors"):        # the input named through the link
        check_output(layout / "vectors", {"vectors": str(layout / "link-to-vectors")})


def test_a_symlink_loop_is_one_clear_refusal(layout):
    (layout / "a").symlink_to(layout / "b")
    (layout / "b").symlink_to(layout / "a")
    with pytest.raises(BadInput, match="cannot be resolved"):
        check_output(layout / "a" / "out", {})
    with pytest.raises(BadInput, match="corpus .* cannot be resolved"):
        check_output(layout / "out", {"corpus": str(layout / "a")})


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere, so no directory is read-only to it")
def test_a_parent_that_is_not_writable_is_refused(layout):
    (layout / "locked").mkdir(mode=0o555)
    with pytest.raises(BadInput, match="locked is not writable"):
        check_output(layout / "locked" / "new" / "out", {})


# --- check_output_dir -------------------------------------------------------------------------------------

def test_check_output_dir_replaces_an_existing_result_only_when_asked(tmp_path):
    (tmp_path / "result").mkdir()
    (tmp_path / "result" / "manifest.json").write_text("{}")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "notes.txt").write_text("mine")
    (tmp_path / "empty").mkdir()
    (tmp_path / "file").write_text("mine")
    with pytest.raises(BadInput, match="already holds a result; pass overwrite=true") as refused:
        check_output_dir(tmp_path / "result", False, "manifest.json")
    assert refused.value.fields == ("overwrite",)
    with pytest.raises(BadInput, match="already holds files"):
        check_output_dir(tmp_path / "files", False, "manifest.json")
    with pytest.raises(BadInput, match="exists and is not a directory"):
        check_output_dir(tmp_path / "file", True, "manifest.json")
    for name, overwrite in (("result", True), ("files", True), ("empty", False), ("missing", False)):
        assert check_output_dir(tmp_path / name, overwrite, "manifest.json") == tmp_path / name
