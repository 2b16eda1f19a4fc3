"""The audit verb."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from privsynth.audit.inputs import claimed_guarantee, split_from_model
from privsynth.audit.report import write_report
from privsynth.audit.run import AuditConfig, run_audit, write_audit
from privsynth.cli.options import ForceOpt, JsonOpt
from privsynth.cli.output import print_json, stderr_console, stdout_console
from privsynth.data.corpus import read_corpus
from privsynth.errors import ConfigError, OutputExistsError
from privsynth.sampling import load_registry

PathOpt = Annotated[Path | None, typer.Option(show_default=False)]


def audit(
    synthetic: Annotated[Path, typer.Option("--synthetic", "-s", help="Synthetic corpus folder.", show_default=False)],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for audit.json and report.html.", show_default=False)
    ],
    train: Annotated[
        Path | None, typer.Option("--train", help="Real records used for training.", show_default=False)
    ] = None,
    holdout: Annotated[
        Path | None, typer.Option("--holdout", help="Real records never used in training.", show_default=False)
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Model folder: take train/holdout from its recorded split.", show_default=False),
    ] = None,
    corpus: Annotated[
        Path | None,
        typer.Option("--corpus", help="With --model: the real corpus the model was fit on.", show_default=False),
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="Column for TSTR and cross-modal checks.")] = None,
    include_examples: Annotated[
        bool, typer.Option("--include-examples", help="Put real values in the report (marked INTERNAL, owner-only).")
    ] = False,
    clip_weights: Annotated[
        Path | None,
        typer.Option("--clip-weights", help="Local open_clip weights (file or folder).", show_default=False),
    ] = None,
    clip_model: Annotated[
        str, typer.Option("--clip-model", help="open_clip architecture of --clip-weights.")
    ] = "ViT-B-32",
    spacy_model: Annotated[
        str | None,
        typer.Option("--spacy-model", help="Installed spaCy NER model (name or path) for names.", show_default=False),
    ] = None,
    ocr: Annotated[str, typer.Option("--ocr", help="OCR images with tesseract: auto, on or off.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed for subsampling and bootstraps.")] = 0,
    as_json: JsonOpt = False,
    force: ForceOpt = False,
) -> None:
    """Audit any synthetic corpus against the real one: memorization, PII, attacks, fidelity.

    Give --train and --holdout, or --model and --corpus (the split recorded at fit time). Writes audit.json
    (every number and threshold) and a self-contained report.html. The audit reads real records outside the DP
    guarantee: its outputs hold aggregates only, unless --include-examples.
    """
    if out.exists() and any(out.iterdir()) and not force:
        raise OutputExistsError(f"{out} already exists and is not empty; pass --force to replace its audit")
    if ocr not in ("auto", "on", "off"):
        raise ConfigError(f"--ocr {ocr!r} is not one of auto, on, off")
    if model is not None:
        if corpus is None:
            raise ConfigError("--model needs --corpus (the real corpus it was fit on)")
        real_train, real_holdout = split_from_model(read_corpus(corpus), model)
    else:
        if train is None or holdout is None:
            raise ConfigError("pass --train and --holdout, or --model and --corpus")
        real_train, real_holdout = read_corpus(train), read_corpus(holdout)
    synthetic_corpus = read_corpus(synthetic)
    config = AuditConfig(
        seed=seed,
        target=target,
        include_examples=include_examples,
        clip_weights=clip_weights,
        clip_model=clip_model,
        spacy_model=spacy_model,
        ocr=ocr,
    )
    canaries = None
    if model is not None and (model / "internal" / "canaries.json").is_file():
        canaries = json.loads((model / "internal" / "canaries.json").read_text(encoding="utf-8"))
    console = stderr_console()
    with console.status("Auditing...") as status:
        result = run_audit(
            real_train,
            real_holdout,
            synthetic_corpus,
            config=config,
            registry=load_registry(synthetic),
            claimed=claimed_guarantee(synthetic, model),
            canaries=canaries,
            progress=lambda message: status.update(f"Auditing: {message}..."),
        )
    write_audit(result, out)
    report = write_report(result, out)
    if as_json:
        print_json({"audit": str(out / "audit.json"), "report": str(report), "checks": result["checks"]})
        return
    failed = [c["name"] for c in result["checks"] if c["status"] == "fail"]
    console_out = stdout_console()
    console_out.print(f"Audit written to {out / 'audit.json'}; report: {report}")
    if include_examples:
        console.print("[bold red]INTERNAL[/bold red]: the report holds real values (owner-only files).", markup=True)
    console_out.print(
        "No check failed at the reference thresholds."
        if not failed
        else f"{len(failed)} check(s) failed at the reference thresholds: {', '.join(failed)}"
    )
    console_out.print(f"Next: privsynth gate {out / 'audit.json'} --policy audits/default.yaml")
