"""Release verbs: gate, release, verify, keygen."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from privsynth.audit.run import read_audit
from privsynth.cli.options import ForceOpt, JsonOpt
from privsynth.cli.output import ExitCode, print_json, stderr_console, stdout_console, training_label
from privsynth.data.atomic import check_writable
from privsynth.errors import IntegrityError, OutputExistsError
from privsynth.gate import GateDecision, gate, load_policy
from privsynth.release.bundle import write_release
from privsynth.release.info import load_release_info
from privsynth.release.manifest import generate_keypair, verify_release

PolicyOpt = Annotated[Path, typer.Option("--policy", "-p", help="Release policy YAML (audits/*.yaml).")]


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
    policy: PolicyOpt = Path("audits/default.yaml"),
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
    if as_json:
        print_json(decision.model_dump(mode="json"))
    else:
        _print_decision(decision)
    if not decision.passed:
        raise typer.Exit(ExitCode.REFUSED)


def release(
    synthetic: Annotated[Path, typer.Option("--synthetic", "-s", help="Synthetic corpus folder.", show_default=False)],
    audit: Annotated[Path, typer.Option("--audit", "-a", help="Its audit.json (or folder).", show_default=False)],
    info: Annotated[
        Path, typer.Option("--info", "-i", help="release.yaml (see configs/release-template.yaml).", show_default=False)
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Release folder to create.", show_default=False)],
    policy: PolicyOpt = Path("audits/default.yaml"),
    sign_key: Annotated[
        Path | None,
        typer.Option("--sign-key", help="Ed25519 private key (PEM) to sign the manifest.", show_default=False),
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Gate, then write a release atomically: data, datasheet, dataset card, Croissant, manifest (or nothing).

    Exit code 3 when the gate refuses; nothing is written then.
    """
    check_writable(out, force=force, what="--out")
    result = write_release(
        synthetic=synthetic,
        audit=read_audit(audit),
        policy=load_policy(policy),
        policy_path=policy,
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
) -> None:
    """Run the whole pipeline: profile, fit, sample, audit, gate, release, into runs/<name>/.

    Finished stages are skipped when run again; an interrupted fit resumes from its checkpoint without spending
    privacy twice. Exit code 3 when the gate refuses the release.
    """
    from privsynth.pipeline import load_pipeline, run_pipeline

    settings = load_pipeline(config)
    console = stderr_console()
    with console.status("Running...") as status:

        def say(message: str) -> None:
            status.update(f"Running: {message}...")
            if not console.is_terminal:  # logs and CI: one line per stage instead of a spinner
                console.print(f"privsynth run: {message}")

        def progress(stage: str, done: int, total: int) -> None:
            status.update(f"Running: {training_label(stage)}, step {done}/{total}...")
            if not console.is_terminal and (done == total or done % max(1, total // 4) == 0):
                console.print(f"privsynth run: {training_label(stage)}, step {done}/{total}")

        outcome = run_pipeline(settings, say=say, progress=progress)
    out = stdout_console()
    if outcome.skipped:
        out.print(f"Skipped finished stages: {', '.join(outcome.skipped)}")
    out.print(f"Audit report: {outcome.report}")
    if not outcome.passed:
        for reason in outcome.reasons:
            out.print(f"  [red]hard[/red] {reason}")
        out.print(f"[bold red]Release refused[/bold red] by policy {settings.policy}; see {outcome.folder}/gate/")
        raise typer.Exit(ExitCode.REFUSED)
    if outcome.release is not None:
        out.print(
            f"[bold green]Release[/bold green]: {outcome.release} (check it with: privsynth verify {outcome.release})"
        )
    else:
        out.print("The gate passed; no 'release' section in the config, so nothing was exported.")
