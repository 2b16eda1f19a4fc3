"""The audit verb."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from privsynth.audit.folders import audit_folders
from privsynth.audit.run import AuditConfig, Collaborators
from privsynth.cli.options import AddressOpt, EngineOpt, ForceOpt, JsonOpt, WorkersOpt
from privsynth.cli.output import PlainProgress, print_json, stderr_console, stdout_console
from privsynth.engine import engine_settings, make_engine
from privsynth.errors import ConfigError, OutputExistsError

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
    engine: EngineOpt = None,
    workers: WorkersOpt = None,
    address: AddressOpt = None,
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
    if model is not None and corpus is None:
        raise ConfigError("--model needs --corpus (the real corpus it was fit on)")
    if model is None and (train is None or holdout is None):
        raise ConfigError("pass --train and --holdout, or --model and --corpus")
    where = engine_settings(engine, workers=workers, address=address)
    config = AuditConfig(
        seed=seed,
        target=target,
        include_examples=include_examples,
        clip_weights=clip_weights,
        clip_model=clip_model,
        spacy_model=spacy_model,
        ocr=ocr,
    )
    console = stderr_console()
    plain = None if console.is_terminal else PlainProgress("audit")  # logs and pipes: timestamped stage lines
    with console.status("Auditing...") as status:

        def progress(message: str) -> None:
            status.update(f"Auditing: {message}...")
            if plain is not None:
                plain.line(message)

        progress(f"starting the {where.kind} engine")
        runner = make_engine(where)
        try:
            outcome = audit_folders(
                synthetic,
                out,
                model=model,
                corpus=corpus,
                train=train,
                holdout=holdout,
                config=config,
                collaborators=Collaborators(engine=runner),
                progress=progress,
            )
        finally:
            runner.close()
    result, report = outcome.result, outcome.report
    if as_json:
        print_json({"audit": str(out / "audit.json"), "report": str(report), "checks": result["checks"]})
        return
    failed = [c["name"] for c in result["checks"] if c["status"] == "fail"]
    console_out = stdout_console()
    console_out.print(f"Audit written to {out / 'audit.json'}; report: {report}")
    if include_examples:
        console.print("[bold red]INTERNAL[/bold red]: the report holds real values (owner-only files).", markup=True)
    console_out.print(
        "Every check is within the reference thresholds (no release decision yet: the gate decides)."
        if not failed
        else f"{len(failed)} check(s) outside the reference thresholds: {', '.join(failed)} (no release decision "
        "yet: the gate decides under your policy)"
    )
    console_out.print(f"Next: privsynth gate {out / 'audit.json'} --policy default")
