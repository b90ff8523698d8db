"""Cut very long texts by characters before tokenizing, without changing the tokens the model sees.

A fast tokenizer normalizes and splits a whole text before truncating it to ``max_length``: a 5 MB
text took 17 s to yield its first 256 tokens. Only a prefix can matter, so a text longer than
``first_cut`` characters is tokenized as a prefix of that length first:

    first_cut = max_length x (longest vocabulary entry in characters + 1)

enough for ``max_length`` tokens of ordinary text (every token covers at most its vocabulary
entry's characters, plus one separating space). Cutting can change only the *last* word of the
prefix (a word cut in two tokenizes differently; pre-tokenizers split on whitespace and
punctuation, so nothing before it moves). So the prefix is tokenized in full, with word ids, and
accepted when the tokens before its last word already fill the model's room
(``max_length`` less the special tokens): the text given to the model is then the prefix up to
that last word, whose first ``max_length`` tokens are exactly the whole text's. The text had more
tokens than that, so it counts as truncated. Otherwise (long whitespace runs, one enormous word
that becomes a single [UNK], scripts without spaces under a word-level pre-tokenizer) the prefix is
made 4x longer and tried again, up to the whole text: never a different result, at worst the old
cost.

    >>> cut = CharCut(tokenizer, max_length=256)   # doctest: +SKIP
    >>> texts, was_cut = cut.prepare(["x " * 2_500_000, "a short one"])   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

GROWTH = 4  # a prefix that was too short is tried again this many times longer


class CharCut:
    def __init__(self, tokenizer, max_length: int):
        from tokenizers import Tokenizer

        self.full = Tokenizer.from_str(tokenizer.to_str())   # the same tokenizer, without truncation
        self.full.no_truncation()
        self.full.no_padding()
        processor = tokenizer.post_processor
        specials = processor.num_special_tokens_to_add(False) if processor is not None else 0
        self.room = max(1, max_length - specials)            # content tokens the model sees
        longest = max((len(token) for token in tokenizer.get_vocab()), default=1)
        self.first_cut = max_length * (longest + 1)

    def prepare(self, texts: Sequence[str]) -> tuple[list[str], list[bool]]:
        """(texts to tokenize, whether each was cut); a cut text's first max_length tokens are the
        original's, and it had more than that."""
        out, cut = list(texts), [False] * len(texts)
        long = [i for i, text in enumerate(out) if len(text) > self.first_cut]
        if not long:
            return out, cut
        prefixes = self.full.encode_batch([out[i][: self.first_cut] for i in long], add_special_tokens=False)
        for i, encoding in zip(long, prefixes):
            end = self._stable_end(encoding)
            length = self.first_cut
            while end is None and length < len(out[i]):
                length *= GROWTH
                if length >= len(out[i]):
                    break                                    # the whole text: tokenized as it is
                end = self._stable_end(self.full.encode(out[i][:length], add_special_tokens=False))
            if end is not None:
                out[i], cut[i] = out[i][:end], True
        return out, cut

    def _stable_end(self, encoding) -> int | None:
        """Where the prefix's last word starts, if the tokens before it fill the model's room."""
        words = encoding.word_ids
        if len(words) <= self.room or words[-1] is None:
            return None
        last = words[-1]
        first_of_last = next(t for t in range(len(words) - 1, -1, -1) if t == 0 or words[t - 1] != last)
        if first_of_last < self.room or any(w is None for w in words[:first_of_last]):
            return None
        return encoding.offsets[first_of_last][0]
