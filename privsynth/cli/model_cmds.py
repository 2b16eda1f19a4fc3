"""Model verbs: fit and sample."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from privsynth.cli.options import (
    AddressOpt,
    CorpusArg,
    DeltaOpt,
    EngineOpt,
    EpsilonOpt,
    FitSeedOpt,
    ForceOpt,
    SeedOpt,
    SourceOpt,
    StoreOpt,
    WorkersOpt,
)
from privsynth.cli.output import (
    PlainProgress,
    collected_warnings,
    print_json,
    progress_count,
    stderr_console,
    stdout_console,
    training_label,
)
from privsynth.conditions import parse_conditions
from privsynth.data.atomic import check_writable
from privsynth.data.corpus import Corpus, read_corpus
from privsynth.data.fingerprint import corpus_fingerprint
from privsynth.data.layout import load_provenance
from privsynth.engine import Engine, engine_settings, make_engine
from privsynth.errors import ConfigError
from privsynth.privacy.store import LedgerStore
from privsynth.variation import parse_grid, parse_rebalance
from privsynth.workdir import discard_finished, finished_by

if TYPE_CHECKING:
    from privsynth.synthesizer import Synthesizer

# The generators (torch, Presidio) are imported by the commands that fit or sample, not with the CLI: `privsynth
# --help`, validate, audit and release start without them.

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Pipeline config YAML (see configs/default.yaml).", show_default=False),
]


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        transient=True,
    )


def fit(
    corpus: CorpusArg,
    epsilon: EpsilonOpt,
    out: Annotated[Path, typer.Option("--out", "-o", help="Model folder to create.", show_default=False)],
    delta: DeltaOpt = None,
    config: ConfigOpt = None,
    holdout_fraction: Annotated[
        float | None,
        typer.Option(
            "--holdout-fraction", min=0.0, max=0.95, help="Real records kept out for audits (default 0.2; 0 allowed)."
        ),
    ] = None,
    seed: FitSeedOpt = None,
    source: SourceOpt = None,
    ledger_store: StoreOpt = None,
    canaries: Annotated[
        int,
        typer.Option(
            "--canaries",
            min=0,
            max=100_000,
            help="Train M random canary records into a shadow model (never released) for the one-run privacy "
            "audit (see docs).",
        ),
    ] = 0,
    workdir: Annotated[
        Path | None,
        typer.Option(
            "--workdir",
            help="Owner-only folder that makes the fit resumable (default: .OUT.work beside --out); deleted once "
            "the model is written.",
            show_default=False,
        ),
    ] = None,
    plan: Annotated[
        bool,
        typer.Option(
            "--plan",
            help="Print what the fit will do (each stage's noise, each column's likely outcome and the fix) and "
            "stop: reads only schema.yaml, spends nothing. Needs --people.",
        ),
    ] = False,
    people: Annotated[
        int | None,
        typer.Option(
            "--people",
            min=1,
            help="With --plan: your estimate of the number of people (units of privacy); never read from the data.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --plan: print the plan as JSON.")] = False,
    engine: EngineOpt = None,
    workers: WorkersOpt = None,
    address: AddressOpt = None,
    force: ForceOpt = False,
) -> None:
    """Fit DP generators on a corpus: one (epsilon, delta) for everything, spent in the ledger before any noise.

    Reserves a holdout for audits (keys stored owner-only under MODEL/internal/), bounds each person's records,
    counts people and profiles under DP, trains with DP-SGD. Every random draw that touches the records comes
    from fresh OS entropy (there is no fit seed: noise that can be replayed protects nothing). An interrupted fit
    started again with the same arguments resumes from its work folder without spending twice. The model folder
    holds safetensors weights, JSON metadata and the ledger; no pickle.
    """
    if plan:
        _print_plan(corpus, epsilon=epsilon, delta=delta, config=config, people=people, as_json=as_json)
        return
    if seed is not None:
        raise ConfigError(
            "--seed does not apply to fit: its noise comes from fresh OS entropy every run so that nobody can "
            "replay it. Use --seed with 'privsynth sample' for reproducible sampling."
        )
    from privsynth.config import load_config
    from privsynth.synthesizer import MAX_EPSILON, Synthesizer, config_sha256

    if not 0 < epsilon <= MAX_EPSILON:
        raise ConfigError(f"--epsilon must be > 0 and at most {MAX_EPSILON:g} (above that it means no guarantee)")
    where_run = engine_settings(engine, workers=workers, address=address)
    work = workdir if workdir is not None else out.with_name(f".{out.name}.work")
    settings = load_config(config)
    finished = finished_by(work, out) if work.is_dir() else None
    if finished is not None:  # killed after writing the model, before deleting its work folder (real keys)
        discard_finished(work)
        asked = {"epsilon": epsilon, "delta": delta, "canaries": canaries, "config_sha256": config_sha256(settings)}
        if not force and all(finished.get(k) == v for k, v in asked.items()):
            stdout_console().print(f"{out} was already written by a fit with these settings; nothing to do.")
            return
    check_writable(out, force=force, what="--out")  # every check that needs no private data, before any spend
    if not work.is_dir():
        check_writable(work, what="--workdir")
    if holdout_fraction is not None:
        settings = settings.model_copy(update={"holdout_fraction": holdout_fraction})
    data = read_corpus(corpus)
    store = LedgerStore(ledger_store)
    with collected_warnings() as warnings:
        try:
            runner = make_engine(where_run)
            try:
                synth = _fit_with_progress(
                    Synthesizer(settings), data, epsilon, delta, store, source, canaries, work, runner
                )
            finally:
                runner.close()
        except BaseException:
            _print_warnings(warnings)  # what was held back may explain the failure
            raise
    synth.save(out, force=force)  # and deletes the work folder
    console = stdout_console()
    console.print(
        f"Model written to {out}: epsilon {synth.ledger_.epsilon:.4f} of {epsilon:g}, delta "
        f"{synth.ledger_.target_delta:.3g}, holdout records kept out for audits (keys under {out}/internal/)."
    )
    console.print(f"Unit of privacy: {synth.schema_.unit_of_privacy}")
    _summary(synth, warnings)
    console.print(f"Next: privsynth sample {out} --n 1000 --out synthetic")


def _fit_with_progress(
    synth: Synthesizer,
    data: Corpus,
    epsilon: float,
    delta: float | None,
    store: LedgerStore,
    source: str | None,
    canaries: int,
    work: Path,
    engine: Engine,
) -> Synthesizer:
    """The fit, with progress bars on a terminal, else plain timestamped lines with an ETA (logs, CI, '!')."""
    with ExitStack() as stack:
        if stderr_console().is_terminal:
            bar = stack.enter_context(_progress())
            task = bar.add_task("DP-SGD tabular", total=None)

            def report(stage: str, done: int, total: int) -> None:
                bar.update(task, description=training_label(stage), completed=done, total=total)

        else:
            plain = PlainProgress("fit")
            plain.line("counting people and profiling under DP, then training each generator")
            report = plain.step
        return synth.fit(
            data,
            epsilon=epsilon,
            delta=delta,
            store=store,
            source=source,
            progress=report,
            canaries=canaries,
            workdir=work,
            engine=engine,
        )


def _print_warnings(warnings: list[str]) -> None:
    if warnings:
        err = stderr_console()
        err.print("[bold]Warnings during the fit[/bold]:")
        for message in warnings:
            err.print(f"  - {escape(message)}")


def _summary(synth: Synthesizer, warnings: list[str]) -> None:
    """The end-of-fit summary: degraded columns (read from the DP profile: free), left-out columns, warnings."""
    from privsynth.profile.findings import degraded_columns

    err = stderr_console()
    findings = degraded_columns(synth.profile_, synth.schema_)
    shown = {f.column for f in findings}
    if not findings and not synth.skipped_ and not warnings:
        stdout_console().print("Summary: no column came out degraded in the DP profile.")
        return
    err.print(f"[bold]Summary[/bold]: {len(findings)} column(s) degraded in the DP profile.")
    for finding in findings:
        err.print(f"  - [yellow]{escape(finding.column)}[/yellow]: {escape(finding.problem)}; {escape(finding.fix)}.")
    for name, reason in synth.skipped_.items():
        if name not in shown:  # a column the profile findings already named (with its fix)
            err.print(f"  - [yellow]{escape(name)}[/yellow]: left out of samples: {escape(reason)}.")
    _print_warnings([w for w in warnings if not any(f"'{c}'" in w for c in shown)])


def _print_plan(
    corpus: Path, *, epsilon: float, delta: float | None, config: Path | None, people: int | None, as_json: bool
) -> None:
    from rich.table import Table

    from privsynth.config import load_config
    from privsynth.data.corpus import schema_path
    from privsynth.data.schema import load_schema
    from privsynth.synthesizer import Synthesizer

    if people is None:
        raise ConfigError(
            "--plan needs --people N, your estimate of the number of people in the corpus: the plan never reads "
            "the records (a fit counts them under DP), so it spends nothing"
        )
    schema = load_schema(schema_path(corpus))
    result = Synthesizer(load_config(config)).plan(schema, epsilon=epsilon, delta=delta, people=people)
    if as_json:
        print_json(result.to_dict())
        return
    console = stdout_console()
    console.print(
        f"Plan for about {people} people (up to {result.records_per_person} record(s) each) at epsilon "
        f"{epsilon:g}, delta {result.delta:.3g}. Nothing was read but schema.yaml; nothing was spent."
    )
    colour = {"ok": "green", "degraded": "yellow", "collapses": "red"}
    stages = Table("stage", "share", "noise", "what it means", "verdict", title="Stages", title_justify="left")
    for stage in result.stages:
        stages.add_row(
            escape(stage.stage),
            f"{stage.share:.0%}",
            f"{stage.noise_multiplier:.3g}",
            escape(stage.expectation),
            f"[{colour[stage.verdict]}]{stage.verdict}[/]",
        )
    console.print(stages)
    columns = Table("column", "kind", "metadata", "what to expect", "verdict", title="Columns", title_justify="left")
    for column in result.columns:
        columns.add_row(
            escape(column.column),
            column.kind,
            column.metadata,
            escape(column.expectation),
            f"[{colour[column.verdict]}]{column.verdict}[/]",
        )
    console.print(columns)
    if result.problems:
        console.print("[bold]To do before fitting:[/bold]")
        for item in result.problems:
            name = str(getattr(item, "column", None) or getattr(item, "stage", ""))
            console.print(f"  - {escape(name)} ({item.verdict}): {escape(item.fix)}")
    else:
        console.print("Nothing is expected to collapse.")


def sample(
    model: Annotated[Path, typer.Argument(help="Model folder written by privsynth fit.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Synthetic corpus folder to create.", show_default=False)],
    n: Annotated[
        int | None,
        typer.Option(
            "--n", min=1, help="Number of synthetic records (required, except with --grid).", show_default=False
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed; the same seed gives the same records.")] = 0,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            "-w",
            help="Fix a column, COLUMN=VALUE (e.g. diagnosis=pneumonia), or hold a number or date in a range, "
            "COLUMN>=VALUE, >, <=, < (e.g. 'age>=65'); repeatable. Values outside the column's range are refused.",
        ),
    ] = None,
    rebalance: Annotated[
        str | None,
        typer.Option(
            "--rebalance",
            help="Category mix of one column: COLUMN (uniform over its categories) or COLUMN=a:0.3,b:0.7 (shares). "
            "Each record's category is fixed first, in exactly these proportions; the rest follows the model.",
            show_default=False,
        ),
    ] = None,
    grid: Annotated[
        str | None,
        typer.Option(
            "--grid",
            help="COL1,COL2: --per-cell records for every combination of these columns' categories (scenario "
            "coverage of rare combinations); sets the number of records.",
            show_default=False,
        ),
    ] = None,
    per_cell: Annotated[int, typer.Option("--per-cell", min=1, help="Records per --grid cell.")] = 10,
    table_format: Annotated[str, typer.Option("--format", help="parquet, csv or jsonl.")] = "parquet",
    text: Annotated[
        list[str] | None,
        typer.Option(
            "--text",
            help="How text columns are sampled, SETTING=VALUE, repeatable: temperature, and with a backbone top_p, "
            "candidates (best-of-k: k draws per record, keep the one candidate_score rates best), candidate_score "
            "(fields: the draw its record's fields explain best, a scoring pass per draw; keywords: the draw a fitted "
            "keyword prior reads as the record's own category; classifier: the draw a fitted DP classifier reads as "
            "the record's own category, from its MiniLM embedding), candidates_max (with keywords or classifier: draw "
            "again, candidates at a time, until the kept draw reads as its record's own category, at most this many "
            "draws), guidance (a weight above 1: amplify what the "
            "record's fields change in its text; needs guidance_fields, e.g. guidance_fields=diagnosis, or a model "
            "fitted with condition_dropout), "
            "no_repeat_ngram (never repeat a run of that many tokens in a text), repetition_penalty (a word a text "
            "already holds is that many times less likely at temperature 1), placeholder_limit (write each "
            "placeholder at most that many times in a text), sample_vocab (trained: only the token ids the fit "
            "trained; all), lengths (profile: cut texts to lengths drawn from the DP profile; model), "
            "keyword_strength (the weight of a fitted keyword prior; 0: off), keyword_once (true: the prior asks for "
            "each of its words until the text holds it) and scrub. "
            "Default: the fit's config.",
            show_default=False,
        ),
    ] = None,
    engine: EngineOpt = None,
    workers: WorkersOpt = None,
    address: AddressOpt = None,
    force: ForceOpt = False,
) -> None:
    """Sample synthetic records into a corpus folder with the real corpus' layout and schema.

    Needs no real data. Identifier columns get fake identities; keys are fresh. Sampling, conditions, --rebalance,
    --grid and --text are post-processing of the DP model: they spend no budget. More than 100,000 records are drawn in
    shards of 100,000 (each from its own stream of --seed) into a partitioned Parquet table (records.parquet/ holds
    one part per shard); with --engine ray the shards are drawn in parallel, with the same records for any number
    of workers (workers on other machines need the model folder and --out on shared storage).
    """
    from privsynth.sampling import write_synthetic
    from privsynth.synthesizer import Synthesizer
    from privsynth.text_sampling import parse_text_settings

    if rebalance is not None and grid is not None:
        raise ConfigError("use --rebalance or --grid, not both")
    where_run = engine_settings(engine, workers=workers, address=address)
    check_writable(out, force=force, what="--out")
    text_settings = parse_text_settings(text or [])  # before loading the model: a typo fails at once
    synth = Synthesizer.load(model)
    conditions = parse_conditions(where or [])
    variation = (
        parse_rebalance(rebalance)
        if rebalance is not None
        else parse_grid(grid, per_cell)
        if grid is not None
        else None
    )
    err = stderr_console()
    with err.status("Sampling records...") as status:
        plain = None if err.is_terminal else PlainProgress("sample")  # logs and pipes: timestamped lines, ETA

        def progress(stage: str, done: int, total: int) -> None:
            status.update(
                f"Sampling records: {stage.removeprefix('sampling ')}, {progress_count(stage, done, total)}..."
            )
            if plain is not None:
                plain.step(stage, done, total)

        runner = make_engine(where_run)
        try:
            write_synthetic(
                synth,
                out,
                n=n,
                seed=seed,
                conditions=conditions,
                table_format=table_format,
                force=force,
                variation=variation,
                engine=runner,
                model=model,
                text=text_settings,
                progress=progress,
            )
        finally:
            runner.close()
    for name, reason in synth.skipped_.items():
        stderr_console().print(f"[yellow]Notice[/yellow]: column '{name}' left out: {reason}.")
    provenance = load_provenance(out)
    console = stdout_console()
    if provenance.get("variation"):
        table = Table(title="Asked and achieved (per cell)")
        for header in ("cell", "asked", "achieved"):
            table.add_column(header)
        for cell in provenance["variation"]["cells"]:
            shown = ", ".join(f"{k}={v}" for k, v in cell["conditions"].items())
            table.add_row(escape(shown), str(cell["asked"]), str(cell["achieved"]))
        console.print(table)
    console.print(
        f"Synthetic corpus written to {out} ({provenance.get('records')} records). Next: privsynth validate {out}"
    )


def pretrain_text_command(
    public_text: Annotated[
        list[Path],
        typer.Argument(
            help="PUBLIC UTF-8 .txt files or folders of them (paragraphs split on blank lines), or with --column "
            "one public corpus folder.",
            show_default=False,
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint folder to create.", show_default=False)],
    column: Annotated[
        str | None,
        typer.Option(
            "--column",
            help="Text column of a PUBLIC corpus with your schema: its texts are masked like private ones, so the "
            "checkpoint already writes placeholders.",
            show_default=False,
        ),
    ] = None,
    config: ConfigOpt = None,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Training steps (batches of 64 windows).")] = 2000,
    seed: SeedOpt = None,
    force: ForceOpt = False,
) -> None:
    """Pretrain the text generator on PUBLIC text (no DP), for DP fine-tuning with text.pretrained.

    Everything given here is trained on WITHOUT noise and is not protected: pass only text anyone may read
    (public-domain books, documentation, licences, an open dataset of the same kind), never records of the corpus
    you will fit. Use the same --config as for fit (text.dim, text.layers, text.heads, text.max_bytes must
    match), then set 'text: {pretrained: OUT}' in that config. The checkpoint lists the files' SHA-256 for reviewers.
    """
    from privsynth.config import load_config
    from privsynth.generators.text.pretrain import (
        pretrain_text,
        public_corpus_documents,
        public_corpus_texts,
        read_public_texts,
    )

    check_writable(out, force=force, what="--out")
    settings = load_config(config)
    placeholders: tuple[str, ...] = ()
    raw: list[str] | None = None
    if column is not None:
        if len(public_text) != 1:
            raise ConfigError("with --column, give exactly one public corpus folder")
        public_corpus = read_corpus(public_text[0])
        documents, placeholders = public_corpus_documents(public_corpus, column)
        raw = public_corpus_texts(public_corpus, column)
        sources = [{"file": str(public_text[0].name), "sha256": corpus_fingerprint(public_corpus)}]
    else:
        documents, sources = read_public_texts(public_text)
    with _progress() as bar:
        task = bar.add_task("pretraining on public text", total=steps)
        pretrain_text(
            documents,
            settings.text,
            out,
            steps=steps,
            seed=seed or 0,
            sources=sources,
            placeholders=placeholders,
            overlap_texts=raw,
            progress=lambda done, _total, _loss: bar.update(task, completed=done),
        )
    stdout_console().print(
        f"Public text checkpoint written to {out} ({len(documents)} paragraphs from {len(sources)} file(s)). "
        f"Next: set 'text: {{pretrained: {out}}}' in your fit config."
    )
