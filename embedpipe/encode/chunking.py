"""Long texts cut into windows of tokens, each encoded as a text of its own (``encode --chunk-tokens``).

A text is tokenized once, without truncation and in blocks of characters cut at whitespace (so a 5 MB
text is never handed to the tokenizer whole, as long_texts.py does for truncation), and its token
offsets give the windows: at most ``room`` content tokens each (the window less the model's special
tokens and the prompt's tokens), ``overlap`` tokens shared with the previous window. A window ends
at a sentence end (".", "!", "?" before whitespace) when one lies in its last quarter, else at the
last word start, so no word is split unless a single word fills the window. A chunk is the
character span of its tokens in the source text; it is then encoded like any text (the prompt put
before it), so a chunk's vector is exactly the vector of that span encoded alone. A text that fits
one window is one chunk, the whole text, as without chunking.

    >>> chunker = Chunker(tokenizer, chunk_tokens=128, overlap=16, max_length=256)   # doctest: +SKIP
    >>> chunker.spans("a long manual ...")                                           # doctest: +SKIP
    [(0, 611), (540, 1190), (1122, 1409)]

Chunk rows in a vector directory: ``id`` "<doc id>#<chunk number>", ``doc_id`` (the corpus id, its
type kept), ``chunk`` (0, 1, ...), ``start`` and ``end`` (the span's characters, end exclusive).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from .. import checks
from ..errors import BadInput, ConfigError
from ..formats.vectors import vector_array

SENTENCE_ENDS = ".!?"
BLOCK_CHARS = 65_536      # characters given to the tokenizer at a time (cut back to whitespace)
GROUP_CHARS = 4_000_000  # documents chunked and encoded together, at most (one longer document goes alone)
PREFER_TAIL = 0.25        # a window's boundary is sought in its last quarter: sentence end first, then word


def chunk_id(doc_id, number: int) -> str:
    """The row id of a document's chunk: ``chunk_id("doc7", 2) == "doc7#2"``; the number is
    after the last "#", so any document id reads back unambiguously."""
    return f"{doc_id}#{number}"


def check_chunk_fields(chunk_tokens, overlap) -> None:
    """A config's chunk_tokens (None or >= 2) and chunk_overlap (>= 0, only with chunk_tokens, below it)."""
    checks.at_least("chunk_tokens", chunk_tokens, 2, optional=True)
    checks.at_least("chunk_overlap", overlap, 0)
    if chunk_tokens is None and overlap:
        raise ConfigError("chunk_overlap", "needs chunk_tokens (the window it overlaps)")
    if chunk_tokens is not None and overlap >= chunk_tokens:
        raise ConfigError("chunk_overlap", f"must be less than chunk_tokens {chunk_tokens}, got {overlap}")


def check_window(chunk_tokens: int, overlap: int, max_length: int) -> None:
    """Refuse a window the model cannot take and an overlap that leaves no progress, in one line."""
    if chunk_tokens > max_length:
        raise BadInput(f"chunk_tokens {chunk_tokens} is more than the model's limit of {max_length} tokens "
                       f"(max_length); pass chunk_tokens={max_length} or less", fields=("chunk_tokens",))
    if overlap >= chunk_tokens:
        raise BadInput(f"chunk_overlap {overlap} must be less than chunk_tokens {chunk_tokens}",
                       fields=("chunk_overlap",))


class Chunker:
    """Texts -> character spans of their windows, read off one tokenization of each text.

    ``tokenizer`` is a ``tokenizers.Tokenizer`` without truncation (long_texts.CharCut's ``full``);
    ``prompt`` is the text put before every chunk, whose tokens the window must hold too."""

    def __init__(self, tokenizer, chunk_tokens: int, overlap: int, max_length: int, prompt: str = ""):
        check_window(chunk_tokens, overlap, max_length)
        self.tokenizer = tokenizer
        processor = tokenizer.post_processor
        specials = processor.num_special_tokens_to_add(False) if processor is not None else 0
        prompt_tokens = len(tokenizer.encode(prompt, add_special_tokens=False).ids) if prompt else 0
        self.room = chunk_tokens - specials - prompt_tokens   # content tokens of a chunk
        if self.room < 1:
            raise BadInput(f"chunk_tokens {chunk_tokens} leaves no room for text: the model's {specials} special "
                           f"token(s) and the prompt's {prompt_tokens} token(s) take it all; pass chunk_tokens="
                           f"{specials + prompt_tokens + 1 + overlap} or more", fields=("chunk_tokens",))
        if overlap >= self.room:
            raise BadInput(f"chunk_overlap {overlap} must be less than the {self.room} text tokens a window of "
                           f"{chunk_tokens} holds after {specials} special and {prompt_tokens} prompt token(s)",
                           fields=("chunk_overlap",))
        self.overlap = overlap

    def spans_of(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """Each text's chunk spans, in order (the texts tokenized in one batch)."""
        return [self._spans(text, *found) for text, found in zip(texts, self.offsets_of(texts))]

    def spans(self, text: str) -> list[tuple[int, int]]:
        """The character spans (start, end) of ``text``'s chunks."""
        return self.spans_of([text])[0]

    def _spans(self, text: str, starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
        n = len(starts)
        if n <= self.room:
            return [(0, len(text))]
        spans, first = [], 0
        while True:
            last = self._window_end(text, starts, ends, first)
            begin = int(starts[first]) if first else 0
            while begin < len(text) and text[begin].isspace():   # a byte-level token may hold the space before
                begin += 1
            end = int(ends[last - 1]) if last < n else len(text)
            # Characters no token covers (a combining accent the normalizer strips, a control character
            # it drops) belong to the word they follow: the span runs on to the next space or token.
            while last < n and end < starts[last] and not text[end].isspace():
                end += 1
            spans.append((begin, end))
            if last >= n:
                return spans
            first = self._next_start(text, starts, ends, first, last)

    def offsets(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(start, end) characters of every token of ``text``, special tokens left out."""
        return self.offsets_of([text])[0]

    def offsets_of(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """``offsets`` of each text, all tokenized in one batch, in blocks cut at whitespace so no
        block is a whole huge text."""
        blocks = [(i, a, b) for i, text in enumerate(texts) for a, b in _blocks(text, BLOCK_CHARS)]
        encodings = self.tokenizer.encode_batch([texts[i][a:b] for i, a, b in blocks], add_special_tokens=False)
        found: list[tuple[list, list]] = [([], []) for _ in texts]
        for (i, a, _), encoding in zip(blocks, encodings):
            spans = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)
            found[i][0].append(spans[:, 0] + a)
            found[i][1].append(spans[:, 1] + a)
        return [(np.concatenate(s), np.concatenate(e)) for s, e in found]

    def _window_end(self, text: str, starts, ends, first: int) -> int:
        """One past the last token of the window starting at token ``first``."""
        n = len(starts)
        hard = first + self.room
        if hard >= n:
            return n
        lowest = max(first + 1, hard - max(1, int(self.room * PREFER_TAIL)))
        word = None
        for t in range(hard, lowest - 1, -1):
            if not _word_start(text, starts, ends, t):
                continue
            if text[max(int(ends[t - 1]) - 1, 0)] in SENTENCE_ENDS:
                return t
            word = word or t
        if word is not None:
            return word
        for t in range(lowest - 1, first, -1):   # no boundary in the tail: the last word start at all
            if _word_start(text, starts, ends, t):
                return t
        return hard                              # one word fills the window: cut inside it

    def _next_start(self, text: str, starts, ends, first: int, last: int) -> int:
        """The first token of the window after ``[first, last)``: ``overlap`` tokens back, moved on to a word start."""
        if not self.overlap:
            return last
        t = max(first + 1, last - self.overlap)
        while t < last and not _word_start(text, starts, ends, t):
            t += 1
        return t


def _word_start(text: str, starts, ends, t: int) -> bool:
    """Token ``t`` begins a word: whitespace (or nothing the tokenizer kept) lies before it, or it
    holds its leading space itself (byte-level BPE)."""
    start = int(starts[t])
    return t == 0 or start > int(ends[t - 1]) or (start < len(text) and text[start].isspace())


def _blocks(text: str, size: int):
    """(start, end) blocks of at most ``size`` characters covering ``text``, each cut before a
    whitespace character where the block has one (pre-tokenizers split there, so the tokens of the
    blocks are the whole text's)."""
    start = 0
    while len(text) - start > size:
        end = start + size
        cut = end
        while cut > start and not text[cut].isspace():
            cut -= 1
        end = cut if cut > start else end
        yield start, end
        start = end
    yield start, len(text)


def chunk_rows(chunker: Chunker, encoder, ids: pa.Array, texts: list[str]) -> pa.Table:
    """A batch of documents -> one row per chunk (id, doc_id, chunk, start, end, vector, truncated),
    a document's chunks together and in order; ``encoder`` (a TextEncoder) encodes each chunk as a
    text of its own. Documents go through in groups of about GROUP_CHARS characters, so the token
    offsets and chunk texts held at once stay bounded whatever the batch holds."""
    tables, start = [], 0
    while start < len(texts) or not tables:
        stop, chars = start, 0
        while stop < len(texts) and (stop == start or chars + len(texts[stop]) <= GROUP_CHARS):
            chars += len(texts[stop])
            stop += 1
        tables.append(_group_rows(chunker, encoder, ids.slice(start, stop - start), texts[start:stop]))
        start = stop
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _group_rows(chunker: Chunker, encoder, ids: pa.Array, texts: list[str]) -> pa.Table:
    spans = chunker.spans_of(texts)
    counts = np.fromiter((len(s) for s in spans), dtype=np.int64, count=len(spans))
    doc_rows = np.repeat(np.arange(len(texts)), counts)
    numbers = np.concatenate([np.arange(c) for c in counts]) if len(counts) else np.zeros(0, np.int64)
    flat = [span for doc in spans for span in doc]
    chunk_texts = [texts[d][a:b] for d, (a, b) in zip(doc_rows.tolist(), flat)]
    vectors, truncated = encoder.encode_flagging_truncation(chunk_texts)
    doc_ids = ids.take(pa.array(doc_rows))
    bounds = np.asarray(flat, dtype=np.int64).reshape(-1, 2)
    return pa.table({"id": pa.array([chunk_id(d, n) for d, n in zip(doc_ids.to_pylist(), numbers.tolist())],
                                    pa.string()),
                     "doc_id": doc_ids, "chunk": pa.array(numbers, pa.int32()),
                     "start": pa.array(bounds[:, 0]), "end": pa.array(bounds[:, 1]),
                     "vector": vector_array(vectors), "truncated": pa.array(truncated)})


def chunked_documents(table: pa.Table) -> int:
    """How many documents a table of rows holds: its chunk-0 rows when chunked, else its rows."""
    if "chunk" not in table.column_names:
        return table.num_rows
    return int((table.column("chunk").to_numpy() == 0).sum())


def documents_of(shard: dict) -> int:
    """The corpus rows (documents) behind a receipt or a manifest's shard entry: its ``documents``
    when chunked, else its rows."""
    return int(shard.get("documents", shard["rows"]))


def chunking_record(chunk_tokens: int | None, overlap: int) -> dict:
    """What the manifest's encoder section adds for chunked vectors (nothing when not chunked, so an
    unchunked record reads as before): the window and the overlap, which search and index read."""
    return {} if chunk_tokens is None else {"chunk_tokens": chunk_tokens, "chunk_overlap": overlap}


def chunking_of(manifest: dict | None) -> dict | None:
    """A vector manifest's chunking (``chunking_record``), or None for one row per document."""
    encoder = (manifest or {}).get("encoder") or {}
    return {"chunk_tokens": encoder["chunk_tokens"], "chunk_overlap": encoder.get("chunk_overlap", 0)} \
        if encoder.get("chunk_tokens") else None


def check_chunking(export_dir, chunk_tokens: int, overlap: int, max_length: int, prompt: str) -> None:
    """The refusals a worker's Chunker would make, made once before a run starts (the export's tokenizer)."""
    from pathlib import Path

    from tokenizers import Tokenizer

    Chunker(Tokenizer.from_file(str(Path(export_dir) / "tokenizer.json")), chunk_tokens, overlap, max_length, prompt)
