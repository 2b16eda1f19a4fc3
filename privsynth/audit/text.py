"""Text audits: verbatim spans shared with training texts, and distribution distances.

Verbatim spans: a synthetic text *leaks* a span when it shares a ``k``-character piece (after normalising case
and whitespace) with a training text that appears in no holdout text. Phrases every note uses (templates,
boilerplate) appear in the holdout too and are not counted; a sentence copied from one patient's note is.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

import numpy as np

_SPACES = re.compile(r"\s+")


def _norm(text: str) -> str:
    return _SPACES.sub(" ", text.lower()).strip()


def _shingles(text: str, k: int) -> set[int]:
    return {hash(text[i : i + k]) for i in range(max(len(text) - k + 1, 0))}


class LongestMatch:
    """Longest common substring between a query and any text of a collection, via a suffix automaton.

    Built once over the (normalised) collection in linear time; each query runs in time linear in its length.

    >>> index = LongestMatch(["the patient was seen", "fever and cough"])
    >>> index.longest("a cough and fever"), index.longest("patient was")
    (6, 11)
    """

    def __init__(self, texts: Sequence[str]) -> None:
        self.next: list[dict[str, int]] = [{}]
        self.link = [-1]
        self.length = [0]
        for text in texts:
            last = 0  # each text starts from the root: no match spans two texts
            for ch in text:
                last = self._extend(last, ch)

    def _extend(self, last: int, ch: str) -> int:
        nxt, link, length = self.next, self.link, self.length
        if ch in nxt[last]:  # the transition exists already (generalised automaton over several texts)
            q = nxt[last][ch]
            if length[q] == length[last] + 1:
                return q
            clone = len(length)
            nxt.append(dict(nxt[q]))
            link.append(link[q])
            length.append(length[last] + 1)
            p = last
            while p != -1 and nxt[p].get(ch) == q:
                nxt[p][ch] = clone
                p = link[p]
            link[q] = clone
            return clone
        cur = len(length)
        nxt.append({})
        link.append(0)
        length.append(length[last] + 1)
        p = last
        while p != -1 and ch not in nxt[p]:
            nxt[p][ch] = cur
            p = link[p]
        if p != -1:
            q = nxt[p][ch]
            if length[p] + 1 == length[q]:
                link[cur] = q
            else:
                clone = len(length)
                nxt.append(dict(nxt[q]))
                link.append(link[q])
                length.append(length[p] + 1)
                while p != -1 and nxt[p].get(ch) == q:
                    nxt[p][ch] = clone
                    p = link[p]
                link[q] = clone
                link[cur] = clone
        return cur

    def matches(self, query: str) -> np.ndarray:
        """For every position ``j`` of ``query``, the length of the longest match in the collection ending there."""
        state, current = 0, 0
        nxt, link, length = self.next, self.link, self.length
        out = np.zeros(len(query), dtype=np.int64)
        for j, ch in enumerate(query):
            while state and ch not in nxt[state]:
                state = link[state]
                current = length[state]
            if ch in nxt[state]:
                state = nxt[state][ch]
                current += 1
            out[j] = current
        return out

    def longest(self, query: str) -> int:
        """Length of the longest substring of ``query`` found in the collection."""
        state, current, best = 0, 0, 0
        nxt, link, length = self.next, self.link, self.length
        for ch in query:
            while state and ch not in nxt[state]:
                state = link[state]
                current = length[state]
            if ch in nxt[state]:
                state = nxt[state][ch]
                current += 1
            best = max(best, current)
        return best


CONTEXT = 10  # characters of verbatim context required on each side of a rare token
_TOKEN = re.compile(r"[a-z0-9][a-z0-9/.@-]*[a-z0-9]")


def _tokens(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


@dataclass(frozen=True)
class Verbatim:
    """Synthetic texts that copy a span carrying a rare token from the training texts.

    A token (word, number, date, e-mail...) is *rare* when at most ``rare_docs`` training texts contain it and
    no holdout text does: names, record numbers, addresses, one patient's details. A synthetic text *copies*
    when such a token sits inside a verbatim match of at least ``k`` characters with the training texts, with at
    least ``CONTEXT`` matching characters on each side of it.
    Templated phrases (common tokens) never count, and a rare token alone (a date that happens to recur) needs
    the surrounding ``k`` characters to match as well. ``baseline_share`` is the same rate for real unseen
    texts (half of the holdout, against an equal train sample and the other half): what chance produces.
    """

    k: int
    rare_docs: int
    texts: int
    copying: int
    share: float
    baseline_share: float
    longest: int
    copying_rows: tuple[int, ...]

    @property
    def excess(self) -> float:
        """Copying share beyond the real-unseen baseline."""
        return self.share - self.baseline_share


def _rare_tokens(train: Sequence[str], holdout: Sequence[str], rare_docs: int) -> set[str]:
    seen: dict[str, int] = {}
    for text in train:
        for token in {t for t, _, _ in _tokens(text)}:
            seen[token] = seen.get(token, 0) + 1
    public = {t for text in holdout for t, _, _ in _tokens(text)}
    return {
        t
        for t, n in seen.items()
        if n <= rare_docs and t not in public and len(t) >= 4 and not (t.isdigit() and len(t) <= 4)
    }


def _copying(index: LongestMatch, rare: set[str], texts: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
    flags = np.zeros(len(texts), dtype=bool)
    longest = np.zeros(len(texts), dtype=np.int64)
    for row, text in enumerate(texts):
        ends = index.matches(text)
        longest[row] = int(ends.max()) if len(ends) else 0
        for token, start, stop in _tokens(text):
            if token not in rare:
                continue
            # a verbatim match of k+ characters that holds the token with CONTEXT characters on both sides
            last = stop - 1 + CONTEXT
            if last >= len(text):
                continue
            after = ends[last:]
            span_needed = np.maximum(k, np.arange(last, len(text)) - (start - CONTEXT) + 1)
            if start >= CONTEXT and (after >= span_needed).any():
                flags[row] = True
                break
    return flags, longest


def verbatim_spans(
    train: Sequence[str],
    holdout: Sequence[str],
    synthetic: Sequence[str],
    *,
    k: int = 40,
    rare_docs: int = 3,
    seed: int = 0,
    max_chars: int = 3_000_000,
) -> Verbatim:
    """Synthetic texts copying rare training content, beside the rate of real unseen texts."""
    rng = np.random.default_rng(seed)
    train_n = [_norm(t) for t in train]
    hold_n = [_norm(t) for t in holdout]
    syn_n = [_norm(t) for t in synthetic]

    def cap(texts: list[str], size: int) -> list[str]:
        out, total = [], 0
        for i in rng.permutation(len(texts))[:size]:
            total += len(texts[i])
            if total > max_chars:
                break
            out.append(texts[i])
        return out

    size = min(len(train_n), len(hold_n))
    train_eq, hold_eq = cap(train_n, size), cap(hold_n, size)
    flags, longest = _copying(LongestMatch(train_eq), _rare_tokens(train_eq, hold_eq, rare_docs), syn_n, k)
    order = rng.permutation(len(hold_eq))
    half_a = [hold_eq[i] for i in order[: len(order) // 2]]
    half_b = [hold_eq[i] for i in order[len(order) // 2 :]]
    train_half = cap(train_n, len(half_b))
    base, _ = _copying(LongestMatch(train_half), _rare_tokens(train_half, half_b, rare_docs), half_a, k)
    n = len(syn_n)
    return Verbatim(
        k=k,
        rare_docs=rare_docs,
        texts=n,
        copying=int(flags.sum()),
        share=float(flags.mean()) if n else 0.0,
        baseline_share=float(base.mean()) if len(base) else 0.0,
        longest=int(longest.max()) if n else 0,
        copying_rows=tuple(int(i) for i in np.flatnonzero(flags)),
    )


def longest_overlap(train: Sequence[str], synthetic: Sequence[str], *, probe: int = 12) -> int:
    """Longest character overlap between any synthetic and any training text (normalised), via probe shingles.

    Used by benchmarks; exact for overlaps of at least ``probe`` characters.
    """
    index: dict[int, list[int]] = {}
    normalised = [_norm(t) for t in train]
    for i, text in enumerate(normalised):
        for h in _shingles(text, probe):
            index.setdefault(h, []).append(i)
    best = 0
    for text in synthetic:
        norm = _norm(text)
        candidates: dict[int, int] = {}
        for h in _shingles(norm, probe):
            for i in index.get(h, ())[:50]:
                candidates[i] = candidates.get(i, 0) + 1
        for i, _ in sorted(candidates.items(), key=lambda kv: -kv[1])[:5]:
            match = SequenceMatcher(None, norm, normalised[i], autojunk=False).find_longest_match()
            best = max(best, match.size)
    return best


@dataclass(frozen=True)
class TextStats:
    """Distribution distances between real and synthetic texts."""

    length_tvd: float
    vocabulary_tvd: float
    vocabulary_jaccard: float
    embedding_frechet: float | None


def _length_hist(texts: Sequence[str], edges: np.ndarray) -> np.ndarray:
    lengths = np.array([len(t) for t in texts], dtype=np.float64)
    counts = np.histogram(np.clip(lengths, edges[0], edges[-1] - 1), bins=edges)[0].astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def _words(texts: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for text in texts:
        for word in re.findall(r"[a-z]+", text.lower()):
            counts[word] = counts.get(word, 0) + 1
    return counts


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of vectors (as in FID).

    >>> x = np.random.default_rng(0).normal(size=(500, 3))
    >>> frechet_distance(x, x) < 1e-6
    True
    """
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    # tr sqrt(A B) = sum of sqrt(eigenvalues of A^1/2 B A^1/2), a symmetric PSD matrix: stable even when a
    # covariance is singular (near-identical samples), where sqrtm(A @ B) warns and may go complex
    values, vectors = np.linalg.eigh(cov_a)
    half = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(half @ cov_b @ half), 0, None)).sum()
    value = float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
    return max(value, 0.0)


def text_stats(
    real: Sequence[str],
    synthetic: Sequence[str],
    *,
    real_vectors: np.ndarray | None = None,
    synthetic_vectors: np.ndarray | None = None,
) -> TextStats:
    """Length and vocabulary TVDs, vocabulary Jaccard, and the embedding Fréchet distance when vectors are given."""
    edges = np.unique(np.concatenate([np.arange(0, 100, 10), np.geomspace(100, 100_000, 30)]))
    length = 0.5 * float(np.abs(_length_hist(real, edges) - _length_hist(synthetic, edges)).sum())
    wr, ws = _words(real), _words(synthetic)
    vocab = sorted(set(wr) | set(ws))
    pr = np.array([wr.get(w, 0) for w in vocab], dtype=np.float64)
    ps = np.array([ws.get(w, 0) for w in vocab], dtype=np.float64)
    vocab_tvd = 0.5 * float(np.abs(pr / max(pr.sum(), 1) - ps / max(ps.sum(), 1)).sum())
    jaccard = len(set(wr) & set(ws)) / max(len(vocab), 1)
    frechet = None
    if (
        real_vectors is not None
        and synthetic_vectors is not None
        and len(real_vectors) > 2
        and len(synthetic_vectors) > 2
    ):
        frechet = frechet_distance(real_vectors, synthetic_vectors)
    return TextStats(length_tvd=length, vocabulary_tvd=vocab_tvd, vocabulary_jaccard=jaccard, embedding_frechet=frechet)
