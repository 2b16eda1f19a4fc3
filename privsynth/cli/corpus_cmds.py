"""Corpus verbs: demo-corpus, init, validate, convert."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from privsynth.cli.options import CorpusArg, ForceOpt, JsonOpt, OutArg
from privsynth.cli.output import print_json, stderr_console, stdout_console
from privsynth.data.atomic import write_text_atomic
from privsynth.data.corpus import read_corpus, read_table, write_corpus
from privsynth.data.demo import write_demo_corpus
from privsynth.data.infer import find_table, infer_schema, schema_header
from privsynth.data.schema import SCHEMA_FILE, ColumnKind, Schema, dump_schema, load_schema
from privsynth.data.sdv_metadata import schema_from_sdv, schema_to_sdv
from privsynth.data.stream import validate_streaming
from privsynth.data.summary import CorpusSummary
from privsynth.errors import ConfigError, OutputExistsError


def demo_corpus(
    out: OutArg,
    n: Annotated[int, typer.Option("--n", min=1, max=1_000_000, help="Number of records (visits).")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed; the same seed gives the same corpus.")] = 0,
    force: ForceOpt = False,
) -> None:
    """Build a fake, linked clinical corpus: identities, labs, notes and scans of invented patients.

    Use it to try privsynth end to end without touching real data. Deterministic for a seed.
    """
    with stderr_console().status(f"Building {n} demo records..."):
        write_demo_corpus(out, n=n, seed=seed, force=force)
    stdout_console().print(f"Demo corpus written to {out} ({n} records). Next: privsynth validate {out}")


def init(
    corpus: Annotated[
        Path, typer.Argument(help="Folder with one table file, or the table file itself.", show_default=False)
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing schema.yaml.")] = False,
    from_sdv: Annotated[
        Path | None,
        typer.Option(
            "--from-sdv",
            help="Take the column kinds from SDV single-table metadata JSON instead of inferring them.",
            show_default=False,
        ),
    ] = None,
    entity: Annotated[
        str | None,
        typer.Option(
            "--entity",
            help="With --from-sdv: the id column of the person (several records each), or 'none' if every record "
            "is a different person. Needed when the SDV table has ids besides its primary key.",
            show_default=False,
        ),
    ] = None,
    max_records: Annotated[
        int,
        typer.Option("--max-records", min=1, help="With --from-sdv --entity: public bound on records per person."),
    ] = 1,
    to_sdv: Annotated[
        Path | None,
        typer.Option(
            "--to-sdv",
            help="Write the corpus' existing schema.yaml as SDV single-table metadata JSON to this path, and stop.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Infer a draft schema.yaml (column kinds, identifier types) for you to review.

    It never declares observed values as public metadata: declare domains, bounds and sizes yourself, from a
    public source, to save privacy budget. Coming from SDV: '--from-sdv metadata.json' takes the kinds from your
    SDV metadata (read without looking at the records); '--to-sdv metadata.json' exports schema.yaml for SDV tools.
    """
    table = find_table(corpus)
    target = table.parent / SCHEMA_FILE
    if to_sdv is not None:
        if to_sdv.exists() and not force:
            raise OutputExistsError(f"{to_sdv} already exists; pass --force to overwrite it")
        write_text_atomic(to_sdv, json.dumps(schema_to_sdv(load_schema(target)), indent=2) + "\n")
        stdout_console().print(
            f"Wrote {to_sdv} (SDV SINGLE_TABLE_V1). SDV metadata has no domains, bounds or date ranges: those stay "
            "in schema.yaml only."
        )
        return
    if target.exists() and not force:
        raise OutputExistsError(f"{target} already exists; edit it, or pass --force to infer it again")
    if from_sdv is not None:
        schema = schema_from_sdv(from_sdv, table=table.name, entity=entity, max_records_per_entity=max_records)
        header = f"# From SDV metadata {from_sdv.name}: review it; declare domains and bounds from a codebook.\n"
        write_text_atomic(target, dump_schema(schema, header=header))
        stdout_console().print(
            f"Wrote {target} from {from_sdv}. Review it, then run: privsynth validate {table.parent}"
        )
        _teach_codebook(schema, table.parent)
        return
    inference = infer_schema(read_table(table), table=table.name)
    write_text_atomic(target, dump_schema(inference.schema, header=schema_header(inference)))
    console = stdout_console()
    console.print(f"Wrote {target}. Review it, then run: privsynth validate {table.parent}")
    for name, reason in inference.reasons.items():
        console.print(f"  {name:<24} {inference.schema.columns[name].kind.value:<12} {reason}")
    stderr_console().print(
        "Note: these kinds and the integer/date_only flags were read from your records without noise; they are "
        "outside the privacy guarantee until you confirm them from a codebook (schema.yaml explains)."
    )
    _teach_codebook(inference.schema, table.parent)


def _teach_codebook(schema: Schema, folder: Path) -> None:
    """Which columns have no declared domain or bounds, and why declaring them matters at small n."""
    wanted = {ColumnKind.CATEGORICAL: "domain", ColumnKind.NUMERICAL: "bounds", ColumnKind.DATETIME: "date_range"}
    missing = [
        f"{name} ({wanted[spec.kind]})"
        for name, spec in schema.columns.items()
        if spec.kind in wanted and getattr(spec, wanted[spec.kind]) is None
    ]
    if not missing:
        return
    console = stdout_console()
    console.print(
        f"\n[bold]Declare from a public codebook[/bold] ({len(missing)} column(s)): {escape(', '.join(missing))}.\n"
        "Without them the fit must learn categories and ranges under noise: a category is kept only if more people "
        "than the noise threshold hold it, and a range is read off a coarse grid. With a few hundred people "
        "most categories then collapse into '__other__' and ranges can be orders of magnitude off. Declared "
        "metadata is exact and costs no budget (it must come from a public source, never from these records).\n"
        f"See what a fit would do first: privsynth fit {escape(str(folder))} -e 8 --plan --people N (N: your "
        "estimate)."
    )


def validate(corpus: CorpusArg, as_json: JsonOpt = False) -> None:
    """Check every record against schema.yaml and report every problem at once; print a summary if valid.

    Problems name the column and the record key, never a value. Exit code 2 when anything is wrong.
    """
    with stderr_console().status("Validating records and images..."):
        summary = validate_streaming(corpus)  # batch by batch: memory bounded by the batch, not the table
    if as_json:
        print_json({"valid": True, "summary": summary.to_dict()})
        return
    _print_summary(summary)


def _print_summary(summary: CorpusSummary) -> None:
    console = stdout_console()
    console.print(f"[bold green]Valid[/bold green]: {summary.records} records in {summary.root}/{summary.table}")
    if summary.entities is not None:
        console.print(
            f"{summary.entities} people; up to {summary.max_records_per_entity_found} records each in the data"
        )
    console.print(f"Unit of privacy: {summary.unit_of_privacy}")
    table = Table(title="Columns", show_lines=False)
    for header in ("column", "kind", "pii", "missing", "declared public"):
        table.add_column(header)
    for col in summary.columns:
        table.add_row(col.name, col.kind, col.pii or "", str(col.missing), ", ".join(col.declared_public))
    console.print(table)


def convert(
    corpus: CorpusArg,
    out: OutArg,
    table_format: Annotated[str, typer.Option("--format", help="parquet, csv or jsonl.")] = "parquet",
    force: ForceOpt = False,
) -> None:
    """Copy a validated corpus to another folder and table format (images copied alongside)."""
    if table_format not in ("parquet", "csv", "jsonl"):
        raise ConfigError(f"--format {table_format!r} is not one of parquet, csv, jsonl")
    data = read_corpus(corpus)
    write_corpus(data, out, table_format=table_format, force=force)
    stdout_console().print(f"Wrote {len(data)} records to {out} ({table_format}).")
