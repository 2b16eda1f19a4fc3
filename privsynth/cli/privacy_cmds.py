"""Privacy verbs: profile, ledger show, ledger cap."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from privsynth.cli.options import (
    AccountantOpt,
    CorpusArg,
    DeltaOpt,
    FitSeedOpt,
    ForceOpt,
    JsonOpt,
    SourceOpt,
    StoreOpt,
)
from privsynth.cli.output import print_json, stderr_console, stdout_console
from privsynth.data.atomic import check_writable
from privsynth.data.corpus import read_corpus
from privsynth.data.fingerprint import keyed_fingerprint
from privsynth.errors import ConfigError
from privsynth.privacy.accounting import AccountantKind
from privsynth.privacy.ledger import PrivacyLedger
from privsynth.privacy.planner import MAX_DEFAULT_DELTA
from privsynth.privacy.randomness import Streams
from privsynth.privacy.store import LedgerStore, new_run_id
from privsynth.profile.model import Profile, save_profile
from privsynth.profile.profiler import exact_profile, profile_corpus

ledger_app = typer.Typer(
    help="The persistent ledger store: cumulative spend per source, and caps.", no_args_is_help=True
)


def accountant_kind(value: str) -> AccountantKind:
    """Parse --accountant with a helpful error."""
    try:
        return AccountantKind(value.lower())
    except ValueError:
        raise ConfigError(f"--accountant {value!r} is not one of prv, rdp") from None


def profile(
    corpus: CorpusArg,
    out: Annotated[Path, typer.Option("--out", "-o", help="Profile JSON file to write.", show_default=False)],
    epsilon: Annotated[
        float | None, typer.Option("--epsilon", "-e", help="Privacy budget for the profile (> 0).", show_default=False)
    ] = None,
    delta: DeltaOpt = None,
    internal: Annotated[
        bool,
        typer.Option(
            "--internal", help="Write the EXACT profile for data owners (no privacy, owner-only file, never released)."
        ),
    ] = False,
    seed: FitSeedOpt = None,
    accountant: AccountantOpt = "prv",
    source: SourceOpt = None,
    ledger_store: StoreOpt = None,
    force: ForceOpt = False,
) -> None:
    """Profile a corpus under differential privacy: categories, bounds, bins, lengths, missing rates.

    Metadata declared public in schema.yaml is kept exactly and costs nothing; everything else is learned with
    Gaussian noise (OpenDP's sampler, OS randomness) calibrated to --epsilon and recorded in the ledger store
    before any noise is drawn.
    """
    if seed is not None:
        raise ConfigError("--seed does not apply to profile: its noise comes from fresh OS entropy, never replayable")
    check_writable(out, force=force, what="--out")  # before any spend
    data = read_corpus(corpus)
    if internal:
        if epsilon is not None:
            raise ConfigError("--internal writes the exact profile and spends no budget; drop --epsilon")
        result = exact_profile(data)
        save_profile(result, out)
        stderr_console().print(
            f"[bold yellow]INTERNAL[/bold yellow] exact profile written to {out} (owner-only). It holds real "
            "statistics: never share it, never give it to a generator.",
            markup=True,
        )
        return
    if epsilon is None or not epsilon > 0:
        raise ConfigError("pass --epsilon (> 0), or --internal for the exact owner-only profile")
    store = LedgerStore(ledger_store)
    fingerprint = keyed_fingerprint(data, store)
    source_name = source or fingerprint
    store.check_cap(source_name, epsilon, fingerprint=fingerprint)
    streams = Streams.private()
    ledger = PrivacyLedger(
        epsilon=epsilon,
        delta=delta if delta is not None else MAX_DEFAULT_DELTA,
        accountant=accountant_kind(accountant),
        unit_of_privacy=data.schema.unit_of_privacy,
        rng=streams.mode,
    )
    run_id = new_run_id()
    ledger.attach(store.sink(source=source_name, run_id=run_id, fingerprint=fingerprint))
    with stderr_console().status("Profiling under differential privacy..."):
        result = profile_corpus(data, epsilon=epsilon, delta=delta, streams=streams, ledger=ledger)
    save_profile(result, out)
    _print_profile(result, out, run_id)


def _print_profile(result: Profile, out: Path, run_id: str) -> None:
    console = stdout_console()
    ledger = result.ledger or {}
    console.print(
        f"DP profile written to {out}: epsilon {ledger.get('epsilon', 0.0):.4f} of {ledger.get('target_epsilon')}, "
        f"delta {ledger.get('delta'):.3g}, {result.queries} queries at noise multiplier "
        f"{result.noise_multiplier or 0:.3g} (run {run_id})."
    )
    console.print(f"Unit of privacy: {result.unit_of_privacy}")
    table = Table(title="Columns")
    for header in ("column", "kind", "from", "missing rate"):
        table.add_column(header)
    for name, column in result.columns.items():
        table.add_row(name, column.kind, column.source.value, f"{column.missing_rate:.3f}")
    console.print(table)


@ledger_app.command("show")
def ledger_show(
    source: Annotated[str | None, typer.Option("--source", help="Only this source (name or fingerprint).")] = None,
    as_json: JsonOpt = False,
    ledger_store: StoreOpt = None,
) -> None:
    """Cumulative epsilon per source, and every spend recorded (stage, mechanism, run, operator, time)."""
    store = LedgerStore(ledger_store)
    totals = [store.total(source)] if source is not None else store.sources()
    rows = store.rows(source)
    if as_json:
        print_json(
            {
                "store": store.shown,
                "sources": [t.__dict__ for t in totals],
                "spends": [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in rows],
            }
        )
        return
    console = stdout_console()
    if not rows:
        console.print(f"No spends recorded in {store.shown}" + (f" for source {source}" if source else "") + ".")
        return
    table = Table(title=f"Cumulative spend ({store.shown})")
    for header in ("source", "runs", "epsilon", "delta", "cap"):
        table.add_column(header)
    for t in totals:
        table.add_row(
            t.source, str(t.runs), f"{t.epsilon:.4f}", f"{t.delta:.3g}", "-" if t.cap is None else f"{t.cap:g}"
        )
    console.print(table)
    spends = Table(title="Spends")
    for header in ("time", "source", "run", "stage", "noise", "rate", "steps", "run epsilon", "operator"):
        spends.add_column(header)
    for r in rows:
        spends.add_row(
            r["created_at"].strftime("%Y-%m-%d %H:%M"),
            r["source"][:18],
            r["run_id"],
            r["stage"],
            f"{r['noise_multiplier']:.3g}",
            f"{r['sample_rate']:.3g}",
            str(r["steps"]),
            f"{r['run_epsilon']:.4f}",
            r["operator"],
        )
    console.print(spends)


@ledger_app.command("cap")
def ledger_cap(
    max_epsilon: Annotated[float, typer.Option("--max-epsilon", min=0.0, help="Cap on cumulative epsilon.")],
    source: Annotated[
        str | None, typer.Option("--source", help="Source to cap; omit to set the default for every source.")
    ] = None,
    ledger_store: StoreOpt = None,
) -> None:
    """Cap cumulative epsilon per source (privacy officers): runs that would pass it are refused up front."""
    store = LedgerStore(ledger_store)
    store.set_cap(source, max_epsilon)
    what = f"source {source}" if source else "every source without its own cap"
    stdout_console().print(f"Cap set: cumulative epsilon <= {max_epsilon:g} for {what} ({store.shown}).")
