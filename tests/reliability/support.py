"""Helpers the reliability tests share (fixtures come from tests/conftest.py)."""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embedpipe.encode import EncodeJob
from embedpipe.encode.encoder import EncoderSpec
from embedpipe.formats.vectors import open_vectors, shard_entry

WORDS = "the a cat dog bird fish tree house car road river city water fire sun moon star book word red green".split()


def texts(start: int, stop: int) -> list[str]:
    """Deterministic, varied texts: row i always gets the same text."""
    return [" ".join(WORDS[(i * k + k) % len(WORDS)] for k in range(1, 3 + i % 9)) + f" {i}"
            for i in range(start, stop)]


def write_rows(path: Path, start: int, stop: int, **parquet_options) -> Path:
    pq.write_table(pa.table({"id": [f"doc-{i}" for i in range(start, stop)], "text": texts(start, stop)}), path,
                   **parquet_options)
    return path


def job(model: Path, corpus: Path, out: Path, **kwargs) -> EncodeJob:
    spec = kwargs.pop("spec", None) or EncoderSpec(model=str(model))
    return EncodeJob(str(corpus), out=str(out), spec=spec, runner=kwargs.pop("runner", "local"), **kwargs)


def by_id(out: Path) -> dict:
    """id -> vector for a published vector directory (checksums verified); asserts ids are unique."""
    ids, vectors = open_vectors(out, verify=True).read_all()
    ids = ids.to_pylist()
    assert len(set(ids)) == len(ids), "an id is present more than once"
    return dict(zip(ids, vectors))


def assert_same_vectors(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    np.testing.assert_allclose(np.stack([a[k] for k in sorted(a)]), np.stack([b[k] for k in sorted(a)]), atol=1e-5)


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def processes_mentioning(marker: str) -> dict[int, str]:
    """pid -> command line of every process whose command line contains ``marker`` (Linux /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmdline:
                found[int(entry.name)] = cmdline
    return found


def listening_addresses(pids) -> set[tuple[int, str, int]]:
    """(pid, ip, port) of the TCP sockets these processes listen on, from /proc/net/tcp{,6}."""
    inodes = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:                      # 0A = LISTEN
                address, port = local.split(":")
                found.add((inodes[inode], _ip(address, width), int(port, 16)))
    return found


def _ip(hex_address: str, width: int) -> str:
    raw = bytes.fromhex(hex_address)
    if width == 8:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i:i + 4][::-1] for i in range(0, 16, 4)]
    return str(ipaddress.IPv6Address(b"".join(words)))


def add_shard(vectors_dir: Path, ids: list[str], rows: np.ndarray) -> None:
    """Add a shard to a published vector directory as an incremental encode (or a broken upstream
    job) would: its parquet holds ``rows`` as they are (NaN, inf too), the manifest lists it with a
    correct checksum."""
    listed = json.loads((vectors_dir / "manifest.json").read_text())
    name = f"part-{len(listed['shards']):05d}.parquet"
    flat = pa.array(rows.astype(np.float32).reshape(-1))
    pq.write_table(pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(flat, rows.shape[1])}),
                   vectors_dir / name)
    listed["shards"].append(shard_entry(vectors_dir / name))
    listed["rows"] += len(ids)
    (vectors_dir / "manifest.json").write_text(json.dumps(listed))
