"""Windows over a long text's tokens: overlapping chunks, and which tokens each chunk owns.

    tokens[:budget] --windows of `width` tokens, consecutive windows share >= `overlap`--> chunks
    each overlap is split at its middle: every token is owned by exactly one chunk, and every owned token has at
    least overlap/2 tokens of context on each side that is not the text's edge

Pooling counts only the tokens a chunk owns, so a text that fits one window pools exactly as it always did, and a
longer one is the mean over all its tokens, each counted once. Pure Python: no torch, no tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass

from star.errors import ConfigError


@dataclass(frozen=True)
class Chunk:
    start: int  # first token of the window
    end: int  # one past its last token
    own_start: int  # first token this chunk owns
    own_end: int  # one past the last token it owns


def plan_chunks(n: int, width: int, overlap: int) -> list[Chunk]:
    """Windows of at most `width` tokens covering tokens 0..n-1; the last window ends at n (see module docstring)."""
    if width < 1 or not 0 <= overlap <= width // 2:
        raise ConfigError(f"chunk width={width} and overlap={overlap}: need width >= 1 and 0 <= overlap <= width/2; "
                          "lower TextModelConfig.overlap or raise window")
    if n <= width:
        return [Chunk(0, n, 0, n)]
    stride = width - overlap
    starts = list(range(0, n - width, stride)) + [n - width]
    ends = [s + width for s in starts]
    bounds = [0] + [(starts[k] + ends[k - 1]) // 2 for k in range(1, len(starts))] + [n]
    return [Chunk(s, e, a, b) for s, e, a, b in zip(starts, ends, bounds[:-1], bounds[1:])]
