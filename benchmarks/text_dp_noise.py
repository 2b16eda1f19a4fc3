"""How much of a backbone fine-tune survives DP noise: held-out loss after a few Adam steps, with and without noise.

Diagnostic for issue 19 (the demo's backbone notes). The same adapters as a fit (``text`` settings of the model
given by ``--model``: LoRA on the top layers, frozen lower layers' states once, the loss over the first 16,384
token ids and the placeholders) are trained on ``--notes`` masked demo notes WITHOUT clipping, for ``--steps``
Adam steps of ``--batch`` notes. Each ``--sigma`` adds to every gradient the Gaussian noise a DP step of
``--people`` units would carry relative to one note's gradient: ``sigma x G / people`` per coordinate, with ``G``
the median gradient norm of one note at the start. The held-out loss per text token is measured on the next
``--test`` notes. ``--fitted`` also scores the adapters of fitted models on the same notes (a fit's own training
notes may be among them).

    python benchmarks/text_dp_noise.py --run runs/demo-backbone --sigma 0 0.2 1.13
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import print_table, write_json

from privsynth.data.corpus import read_corpus
from privsynth.generators.text import backbone as backbones
from privsynth.generators.text.finetune import _prepared, _stack
from privsynth.generators.text.generator import TextGenerator
from privsynth.generators.text.llm import lower_states, prompt_ids, record_losses, render_fields
from privsynth.generators.text.tokens import Vocabulary
from privsynth.pii.engine import PiiScanner
from privsynth.synthesizer import Synthesizer

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "demo-backbone", help="A privsynth run folder.")
    parser.add_argument("--model", type=Path, default=None, help="Fitted model for prompts (default RUN/fit/model).")
    parser.add_argument("--column", default="note")
    parser.add_argument("--notes", type=int, default=300)
    parser.add_argument("--test", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--people", type=int, default=240, help="Units of privacy per DP step the noise stands for.")
    parser.add_argument("--lr", type=float, nargs="+", default=[0.002])
    parser.add_argument("--sigma", type=float, nargs="+", default=[0.0, 0.2, 1.13])
    parser.add_argument("--fitted", type=Path, nargs="*", default=[], help="Model folders whose adapters to score.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    fitted = Synthesizer.load(args.model or args.run / "fit" / "model").texts_[args.column]
    corpus = read_corpus(args.run / "corpus" / "data")
    corpus = corpus.with_records(corpus.records.head(args.notes + args.test))
    masked = TextGenerator._masked_texts(corpus, args.column, PiiScanner())
    fields = render_fields(corpus.records, fitted.codecs_, fitted.meanings_, fields_format=fitted.fields_format_)
    config = fitted.config
    model, tokenizer, base, rows = _prepared(
        backbones.locate(config.backbone), Vocabulary.for_schema(corpus.schema).placeholders
    )
    sequences, starts = [], []
    for text, described in zip(masked, fields, strict=True):
        prompt = prompt_ids(tokenizer, described, args.column, prompt_format=fitted.prompt_format_)
        body = tokenizer(text or "", add_special_tokens=False)["input_ids"]
        kept = body[: config.max_tokens]
        sequences.append([*prompt, *kept, *([tokenizer.eos_token_id] if len(kept) == len(body) else [])])
        starts.append(len(prompt))
    vocab = min(config.train_vocab, base)
    want = np.full((len(sequences), max(map(len, sequences))), -1, dtype=np.int64)
    for i, (seq, start) in enumerate(zip(sequences, starts, strict=True)):
        nxt = np.asarray(seq[start:], dtype=np.int64)
        want[i, start - 1 : start - 1 + len(nxt)] = np.where(
            nxt < vocab, nxt, np.where(nxt >= base, nxt - base + vocab, -1)
        )
    targets = torch.as_tensor(want)
    clock = time.time()
    states = lower_states(model, sequences, keep_top=config.adapter_layers, bfloat16=True)
    print(f"frozen states of {len(states)} notes: {time.time() - clock:.0f} s", flush=True)
    head = model.lm_head.weight[:vocab].detach()

    def loss(index: list[int], stack: Any) -> torch.Tensor:
        width = max(len(sequences[i]) for i in index)
        hidden = torch.zeros(len(index), width, states[0].shape[-1])
        for j, i in enumerate(index):
            hidden[j, : len(states[i])] = states[i].float()
        return record_losses(stack(hidden), head, stack.placeholder_logits, targets[index, :width])

    train, test = list(range(args.notes)), list(range(args.notes, args.notes + args.test))
    fresh = lambda: _stack(model, config, rows, torch.Generator().manual_seed(0))  # noqa: E731
    stack = fresh()
    params = [p for p in stack.parameters() if p.requires_grad]
    norms = []
    for i in train[:8]:
        stack.zero_grad()
        loss([i], stack).mean().backward()
        norms.append(float(torch.sqrt(sum((p.grad**2).sum() for p in params))))
    g = float(np.median(norms))
    with torch.no_grad():
        start_loss = float(loss(test, stack).mean())
    results: list[dict[str, Any]] = []
    for lr in args.lr:
        for sigma in args.sigma:
            stack = fresh()
            params = [p for p in stack.parameters() if p.requires_grad]
            optimizer = torch.optim.Adam(params, lr=lr)
            picks, noise = np.random.default_rng(0), torch.Generator().manual_seed(1)
            clock = time.time()
            for _ in range(args.steps):
                optimizer.zero_grad()
                loss(picks.choice(train, args.batch, replace=False).tolist(), stack).mean().backward()
                with torch.no_grad():
                    for p in params:
                        p.grad.add_(torch.randn(p.shape, generator=noise) * sigma * g / args.people)
                optimizer.step()
            with torch.no_grad():
                after = float(loss(test, stack).mean())
            results.append(
                {
                    "adapters": "trained here",
                    "lr": lr,
                    "sigma": sigma,
                    "held_out_loss": after,
                    "seconds": round(time.time() - clock),
                }
            )
            print_table(results[-1:], ["adapters", "lr", "sigma", "held_out_loss", "seconds"])
    for folder in args.fitted:
        with torch.no_grad():
            scored = float(loss(test, Synthesizer.load(folder).texts_[args.column].stack_).mean())
        results.append({"adapters": str(folder), "held_out_loss": scored})
    print(
        f"\nheld-out loss per text token before any step: {start_loss:.3f}; one note's gradient norm G = {g:.3f} "
        f"(median of 8); {sum(p.numel() for p in params):,} adapter weights"
    )
    print_table(results, ["adapters", "lr", "sigma", "held_out_loss", "seconds"])
    write_json(
        "text_dp_noise", {"args": vars(args), "start_loss": start_loss, "gradient_norm": g, "rows": results}, args.out
    )


if __name__ == "__main__":
    main()
