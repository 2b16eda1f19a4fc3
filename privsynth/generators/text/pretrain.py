"""Pretraining the text generator on *public* text, without DP, for DP fine-tuning on the private corpus.

A byte-level model trained from scratch under DP-SGD on a few thousand private records spends most of its budget
learning to spell. Spelling and grammar are public knowledge: learn them first from text anyone may read (a
public-domain book, documentation, licence texts), then let DP-SGD adapt that model to the private corpus with
``text.pretrained`` in the fit config. The public text must be truly public: it is trained on without noise and
nothing about it is protected. The checkpoint records the files' SHA-256 so a reviewer can check what went in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from privsynth.data.corpus import Corpus
from privsynth.data.schema import ColumnKind
from privsynth.errors import ConfigError
from privsynth.generators.text.generator import META, WEIGHTS, TextConfig
from privsynth.generators.text.network import TextLM
from privsynth.generators.text.overlap import public_ngrams
from privsynth.generators.text.public_training import train_public
from privsynth.generators.text.tokens import BOS, EOS, PAD, Vocabulary, public_word_pieces
from privsynth.pii.engine import PiiScanner
from privsynth.pii.placeholders import mask_record_text


def read_public_texts(paths: Sequence[Path]) -> tuple[list[str], list[dict[str, str]]]:
    """Documents (paragraphs of ``.txt`` files, a folder's ``.txt`` files included) and each file's SHA-256."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.rglob("*.txt")))
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"public text not found: {path}")
    if not files:
        raise ConfigError("no public .txt files given; pass files or folders of UTF-8 text")
    documents: list[str] = []
    sources: list[dict[str, str]] = []
    for file in files:
        data = file.read_bytes()
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{file} is not UTF-8 text; convert it first") from None
        sources.append({"file": file.name, "sha256": hashlib.sha256(data).hexdigest()})
        documents.extend(p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if len(p.strip()) >= 20)
    if not documents:
        raise ConfigError("the public text holds no paragraph of 20 characters or more")
    return documents, sources


def public_corpus_texts(corpus: Corpus, column: str) -> list[str]:
    """The raw texts of a public corpus' column (what an overlap check compares with a private corpus)."""
    return [t for t in corpus.records[column] if isinstance(t, str) and t.strip()]


def public_corpus_documents(corpus: Corpus, column: str) -> tuple[list[str], tuple[str, ...]]:
    """Texts of a *public* corpus' column, masked exactly as private training text is (same placeholders).

    A public corpus with the private corpus' schema (e.g. an open dataset of the same kind) teaches the model the
    placeholders too, so DP fine-tuning starts from a model that already writes ``<PERSON>``, not names.
    """
    if column not in corpus.schema.columns or corpus.schema.columns[column].kind is not ColumnKind.TEXT:
        raise ConfigError(f"--column {column!r} is not a text column of the public corpus")
    scanner = PiiScanner()
    documents = []
    for i in range(len(corpus.records)):
        row = corpus.records.iloc[i]
        text = row[column]
        if isinstance(text, str) and text.strip():
            documents.append(mask_record_text(text, row, corpus.schema, scanner.scan(text)))
    return documents, Vocabulary.for_schema(corpus.schema).placeholders


PUBLIC_NGRAMS = "public-ngrams.safetensors"


def pretrain_text(
    documents: Sequence[str],
    config: TextConfig,
    out: Path,
    *,
    placeholders: tuple[str, ...] = (),
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    sources: Sequence[dict[str, str]] = (),
    overlap_texts: Sequence[str] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> Path:
    """Train the byte-level LM on public ``documents`` (random windows) and write a checkpoint folder.

    The checkpoint keeps the word n-gram hashes of the public text (``overlap_texts``, default the documents;
    give the raw texts when the documents are masked) so that a fit can refuse it if it holds private records.
    """
    if steps < 1:
        raise ConfigError("--steps must be at least 1")
    vocab = Vocabulary(placeholders, public_word_pieces(config.words))
    window = config.max_bytes
    encoded = [np.asarray(vocab.encode(d), dtype=np.int64) for d in documents]
    encoded = [e for e in encoded if e.size]
    torch.manual_seed(seed)
    network = TextLM(
        output_vocab=vocab.size,
        prefix_vocab=0,
        max_len=window + 2,
        dim=config.dim,
        layers=config.layers,
        heads=config.heads,
    )

    def windows(rng: np.random.Generator) -> tuple[torch.Tensor, int]:
        batch = np.full((batch_size, window + 2), PAD, dtype=np.int64)
        batch[:, 0] = BOS
        for row, doc in enumerate(rng.integers(0, len(encoded), size=batch_size)):
            text = encoded[doc]
            start = int(rng.integers(0, max(1, text.size - window + 1))) if rng.random() < 0.5 else 0
            piece = text[start : start + window]
            batch[row, 1 : 1 + piece.size] = piece
            if start + window >= text.size:
                batch[row, 1 + piece.size] = EOS
        return torch.as_tensor(batch), 0

    loss = train_public(network, windows, steps=steps, lr=lr, rng=np.random.default_rng(seed), progress=progress)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in network.state_dict().items()}, str(out / WEIGHTS))
    hashes = public_ngrams(overlap_texts if overlap_texts is not None else documents)
    save_file({"hashes": torch.from_numpy(hashes)}, str(out / PUBLIC_NGRAMS))
    meta = {
        "public_pretraining": True,
        "config": config.model_dump(mode="json"),
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "documents": len(encoded),
        "sources": list(sources),
        "placeholders": list(placeholders),
        "pieces": list(vocab.pieces),
        "final_loss": loss,
    }
    (out / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return out
