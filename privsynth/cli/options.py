"""Options shared by several verbs (one definition each, so help texts agree)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

CorpusArg = Annotated[
    Path, typer.Argument(help="Corpus folder (holding schema.yaml and the table).", show_default=False)
]
OutArg = Annotated[Path, typer.Argument(help="Folder to create (must not exist unless --force).", show_default=False)]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace the output if it exists.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
EpsilonOpt = Annotated[
    float, typer.Option("--epsilon", "-e", help="Total privacy budget epsilon for this run (> 0, at most 1000).")
]
DeltaOpt = Annotated[
    float | None,
    typer.Option("--delta", help="Total delta. Default min(1e-5, 0.1/n); delta >= 1/n is refused.", show_default=False),
]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Seed for public pretraining (public data only).")]
# fit and profile have no seed: kept hidden only to explain why when someone passes one
FitSeedOpt = Annotated[int | None, typer.Option("--seed", hidden=True, help="Not used: see the error it gives.")]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--ledger-store",
        envvar="PRIVSYNTH_LEDGER_STORE",
        help="Ledger store: SQLite file or SQLAlchemy URL. Default .privsynth/ledger.sqlite.",
        show_default=False,
    ),
]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="Name the source dataset in the ledger store (default: the corpus' content fingerprint).",
        show_default=False,
    ),
]
AccountantOpt = Annotated[str, typer.Option("--accountant", help="Privacy accountant: prv (tighter, default) or rdp.")]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="Where embeddings, PII scans and nearest-neighbour searches run: local (this process, the default) "
        "or ray (a Ray cluster: RAY_ADDRESS or --address, else a local one; pip install 'privsynth\\[ray]').",
        show_default=False,
    ),
]
WorkersOpt = Annotated[
    int | None,
    typer.Option("--workers", help="With --engine ray: parallel workers (default: the cluster's CPUs).", min=1),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="With --engine ray: the cluster ('auto', 'ray://head:10001'). Default RAY_ADDRESS, else a local one.",
        show_default=False,
    ),
]
