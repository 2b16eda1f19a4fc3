"""Release verbs: gate, release, verify, keygen."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from privsynth.audit.report import write_report
from privsynth.audit.run import read_audit
from privsynth.cli.options import AddressOpt, EngineOpt, ForceOpt, JsonOpt, WorkersOpt
from privsynth.cli.output import (
    ExitCode,
    PlainProgress,
    print_json,
    progress_count,
    stderr_console,
    stdout_console,
    training_label,
)
from privsynth.data.atomic import check_writable
from privsynth.engine import engine_settings
from privsynth.errors import ConfigError, IntegrityError, OutputExistsError
from privsynth.gate import GateDecision, gate, load_policy, resolve_policy
from privsynth.release.bundle import write_release
from privsynth.release.info import load_release_info
from privsynth.release.manifest import generate_keypair, verify_release

PolicyOpt = Annotated[
    str,
    typer.Option(
        "--policy",
        "-p",
        help="Release policy: a built-in name (default, internal, public: 'privsynth policies list') or a YAML file.",
    ),
]


def _print_decision(decision: GateDecision) -> None:
    console = stdout_console()
    verdict = "[bold green]PASS[/bold green]" if decision.passed else "[bold red]REFUSED[/bold red]"
    console.print(
        f"{verdict} under policy '{decision.policy}' v{decision.policy_version} "
        f"(release class: {decision.release_class.value})"
    )
    for finding in decision.reasons:
        console.print(f"  [red]hard[/red] {finding.message}")
    for finding in decision.warnings:
        console.print(f"  [yellow]soft[/yellow] {finding.message}")


def gate_command(
    audit: Annotated[Path, typer.Argument(help="audit.json (or the folder holding it).", show_default=False)],
    policy: PolicyOpt = "default",
    ledger: Annotated[
        Path | None,
        typer.Option(
            "--ledger", help="ledger.json to judge (default: the one the audit recorded).", show_default=False
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Apply a release policy to an audit: exit 0 when it passes, 3 when it refuses, with every reason."""
    result = read_audit(audit)
    rules = load_policy(policy)
    state = (
        json.loads(ledger.read_text(encoding="utf-8"))
        if ledger is not None
        else result.get("claimed", {}).get("ledger")
    )
    decision = gate(rules, result, state)
    report = _report_with_decision(audit, result, decision.model_dump(mode="json"))
    if as_json:
        print_json(decision.model_dump(mode="json"))
    else:
        _print_decision(decision)
        if report is not None:
            stdout_console().print(f"Report with this decision: {report}")
    if not decision.passed:
        raise typer.Exit(ExitCode.REFUSED)


def _report_with_decision(audit: Path, result: dict[str, Any], decision: dict[str, Any]) -> Path | None:
    """Write the audit's report.html again with the gate's decision, so the page and the gate agree.

    Skipped (with a notice) when the audit folder is not writable: the decision itself is already printed.
    """
    folder = audit if audit.is_dir() else audit.parent
    try:
        return write_report(result, folder, decision)
    except OSError as exc:
        stderr_console().print(
            f"[yellow]note[/yellow]: report.html not updated ({exc.strerror}); the decision above stands"
        )
        return None


def release(
    synthetic: Annotated[
        Path | None, typer.Option("--synthetic", "-s", help="Synthetic corpus folder.", show_default=False)
    ] = None,
    audit: Annotated[
        Path | None, typer.Option("--audit", "-a", help="Its audit.json (or folder).", show_default=False)
    ] = None,
    info: Annotated[
        Path | None,
        typer.Option("--info", "-i", help="release.yaml (write a template with --template).", show_default=False),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Release folder to create.", show_default=False)
    ] = None,
    policy: PolicyOpt = "default",
    sign_key: Annotated[
        Path | None,
        typer.Option("--sign-key", help="Ed25519 private key (PEM) to sign the manifest.", show_default=False),
    ] = None,
    template: Annotated[
        Path | None,
        typer.Option(
            "--template",
            help="Write the release information template (release.yaml to fill in: dataset name, owner, licence, "
            "approver, legal basis...) to this path and stop.",
            show_default=False,
        ),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Gate, then write a release atomically: data, datasheet, dataset card, Croissant, manifest (or nothing).

    Exit code 3 when the gate refuses; nothing is written then. Start with 'privsynth release --template
    release.yaml' to get the release information to fill in.
    """
    if template is not None:
        _write_template(template, force=force)
        return
    missing = [
        name
        for name, value in (("--synthetic", synthetic), ("--audit", audit), ("--info", info), ("--out", out))
        if value is None
    ]
    if missing:
        raise ConfigError(f"release needs {', '.join(missing)} (or --template PATH to start a release.yaml)")
    if synthetic is None or audit is None or info is None or out is None:  # for type checkers: refused above
        raise ConfigError("release needs --synthetic, --audit, --info and --out")
    check_writable(out, force=force, what="--out")
    result = write_release(
        synthetic=synthetic,
        audit=read_audit(audit),
        policy=load_policy(policy),
        policy_path=resolve_policy(policy),
        info=load_release_info(info),
        out=out,
        sign_key=sign_key,
        force=force,
    )
    _print_decision(result.decision)
    stdout_console().print(
        f"Release written to {out}: {result.files} files, {'signed' if result.signed else 'unsigned'}. "
        f"Check it any time with: privsynth verify {out}"
    )


def _write_template(path: Path, *, force: bool) -> None:
    from privsynth.data.atomic import write_text_atomic
    from privsynth.resources import RELEASE_TEMPLATE, resource_path

    check_writable(path, force=force, what="--template")
    write_text_atomic(path, resource_path(RELEASE_TEMPLATE).read_text(encoding="utf-8"))
    stdout_console().print(f"Wrote {path}: fill it in, then pass it to 'privsynth release --info {path}'.")


def policies_list(as_json: JsonOpt = False) -> None:
    """List the built-in release policies: release class, budget limits and what each is for."""
    from privsynth.resources import BUILTIN_POLICIES

    rows = []
    for name in BUILTIN_POLICIES:
        policy = load_policy(name)
        rows.append(
            {
                "name": name,
                "release_class": policy.release_class.value,
                "max_epsilon": policy.max_epsilon,
                "max_delta": policy.max_delta,
                "checks": len(policy.checks),
                "description": policy.description,
            }
        )
    if as_json:
        print_json(rows)
        return
    console = stdout_console()
    for row in rows:
        eps = f"epsilon <= {row['max_epsilon']:g}" if row["max_epsilon"] is not None else "no epsilon limit"
        delta = f"delta <= {row['max_delta']:g}" if row["max_delta"] is not None else "no delta limit"
        console.print(
            f"[bold]{row['name']}[/bold]  class {row['release_class']}, {eps}, {delta}, {row['checks']} checks"
        )
        if row["description"]:
            console.print(f"    {escape(str(row['description']).strip())}")
    console.print("Show one with 'privsynth policies show NAME'; copy it to adapt it, then pass --policy FILE.")


def policies_show(
    name: Annotated[str, typer.Argument(help="A built-in policy name, or a policy file.", show_default=False)],
) -> None:
    """Print a policy's YAML (to read it, or to copy it as a start for your own)."""
    load_policy(name)  # valid, or a clear error
    sys.stdout.write(resolve_policy(name).read_text(encoding="utf-8"))


def verify(
    release_dir: Annotated[Path, typer.Argument(help="Release folder.", show_default=False)],
    public_key: Annotated[
        Path | None, typer.Option("--public-key", help="Trusted Ed25519 public key (PEM).", show_default=False)
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Re-check every file's SHA-256 (and the signature): exit 0 when intact, 4 on any change."""
    result = verify_release(release_dir, public_key=public_key)
    if as_json:
        print_json({"ok": result.ok, "files": result.files, "signature": result.signature, "problems": result.problems})
    if not result.ok:
        raise IntegrityError(f"{release_dir}: " + "; ".join(result.problems))
    if not as_json:
        stdout_console().print(
            f"[bold green]Verified[/bold green]: {result.files} files intact; signature: {result.signature}."
        )


def keygen(
    out: Annotated[Path, typer.Argument(help="Folder for the key pair.", show_default=False)],
    name: Annotated[str, typer.Option("--name", help="File name stem.")] = "release-signing",
    force: ForceOpt = False,
) -> None:
    """Make an Ed25519 key pair for signing releases (private key owner-only; share the .pub file)."""
    private, public = out / f"{name}.key", out / f"{name}.pub"
    if (private.exists() or public.exists()) and not force:
        raise OutputExistsError(f"{private} or {public} exists; pass --force to replace them")
    generate_keypair(private, public)
    stdout_console().print(f"Private key: {private} (keep it secret)\nPublic key: {public} (give it to verifiers)")
    stderr_console().print("Sign with: privsynth release ... --sign-key " + str(private))


def run(
    config: Annotated[Path, typer.Argument(help="Run config YAML (see configs/demo.yaml).", show_default=False)],
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Start runs/<name>/ over: delete its earlier stages first. A new fit spends privacy budget again.",
        ),
    ] = False,
    engine: EngineOpt = None,
    workers: WorkersOpt = None,
    address: AddressOpt = None,
) -> None:
    """Run the whole pipeline: profile, fit, sample, audit, gate, release, into runs/<name>/.

    Finished stages are skipped when run again; an interrupted fit resumes from its checkpoint without spending
    privacy twice. When the config changed since the last run, stages made under the old settings are redone if
    that spends nothing (sampling, audit, policy, release); a change that would mean fitting a real corpus again
    is refused unless you pass --fresh. Exit code 3 when the gate refuses the release.
    """
    from privsynth.pipeline import load_pipeline, run_pipeline

    settings = load_pipeline(config)
    if engine is not None or workers is not None or address is not None:
        where = engine_settings(engine, workers=workers, address=address, base=settings.engine)
        settings = settings.model_copy(update={"engine": where})
    console = stderr_console()
    with console.status("Running...") as status:
        plain = None if console.is_terminal else PlainProgress("run")  # logs and CI: timestamped lines, ETA

        def say(message: str) -> None:
            status.update(f"Running: {message}...")
            if plain is not None:
                plain.line(message)

        def progress(stage: str, done: int, total: int) -> None:
            status.update(f"Running: {training_label(stage)}, {progress_count(stage, done, total)}...")
            if plain is not None:
                plain.step(stage, done, total)

        outcome = run_pipeline(settings, say=say, progress=progress, fresh=fresh)
    out = stdout_console()
    if outcome.skipped:
        out.print(f"Skipped finished stages: {', '.join(outcome.skipped)}")
    decision_file = outcome.folder / "gate" / "decision.json"
    if decision_file.is_file():  # the gate's decision, as 'privsynth gate' prints it
        _print_decision(GateDecision.model_validate_json(decision_file.read_text(encoding="utf-8")))
    out.print(f"Audit report:     {outcome.report}")
    out.print(f"Synthetic corpus: {outcome.folder / 'sample' / 'synthetic'}")
    if not outcome.passed:
        out.print(
            f"[bold red]Release refused[/bold red] by policy {settings.policy}: nothing exported ({decision_file})"
        )
        raise typer.Exit(ExitCode.REFUSED)
    if outcome.release is not None:
        out.print(f"Release:          {outcome.release} (check it with: privsynth verify {outcome.release})")
    else:
        out.print("The gate passed; no 'release' section in the config, so nothing was exported.")
