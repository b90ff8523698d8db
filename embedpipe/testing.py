"""Small real models for tests and benchmarks: nothing is downloaded.

    >>> save_tiny_bert(Path("tiny-bert"), words=["cat", "dog"])   # a hub-style model directory
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"


def save_tiny_bert(path: Path, words: Sequence[str], characters: str = LETTERS, seed: int = 0) -> Path:
    """A 2-layer, 32-wide BERT with random weights and a WordPiece vocab of ``words`` plus single
    ``characters`` (and their ``##`` continuations), saved like a hub model; 64 tokens at most."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *characters, *(f"##{c}" for c in characters)]
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tokenizer.model_max_length = 64
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=64)
    BertModel(config).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
