"""The ``privsynth`` command: verbs mirror the library one to one.

Errors are mapped to documented exit codes here, in one place: user errors print their message (no traceback)
and exit 2; anything unexpected exits 1 with a hint to re-run with ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

import typer
from rich.markup import escape
from typer.exceptions import TyperException

from privsynth._version import __version__
from privsynth.cli import audit_cmds, corpus_cmds, model_cmds, privacy_cmds, release_cmds
from privsynth.cli.output import ExitCode, setup_logging, stderr_console
from privsynth.errors import IntegrityError, PrivacyError, ReleaseRefusedError, UserError

HELP = """\
Differentially private synthetic copies of linked records (a table with
free text and images per person), audited, released only if your policy
passes.

[bold]Try it[/bold] on a fake clinical corpus (nothing real):

  privsynth demo-corpus demo/corpus    build the demo corpus
  privsynth validate demo/corpus       check it against schema.yaml

[bold]Your own data[/bold]: one table (.parquet/.csv/.jsonl) and its images
in a folder, then:

  privsynth init FOLDER                draft schema.yaml; review it
  privsynth validate FOLDER            every problem at once
  privsynth fit FOLDER -e 4 -o model   DP generators, one ledger
  privsynth sample model --n 1000 -o synth   synthetic corpus
  privsynth ledger show                cumulative spend per source

[bold]Exit codes[/bold]: 0 ok; 1 internal error (re-run with --verbose);
2 bad input or usage (nothing written); 3 release refused by the
gate; 4 verification failed.

Guides: docs/data-teams.md, docs/privacy-officers.md, docs/compliance.md
"""

app = typer.Typer(
    name="privsynth",
    help=HELP,
    rich_markup_mode="rich",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)

_state = {"verbose": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"privsynth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show debug logs and tracebacks."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    del version
    if verbose and quiet:
        raise typer.BadParameter("--verbose and --quiet exclude each other")
    _state["verbose"] = verbose
    setup_logging(verbose=verbose, quiet=quiet)


app.command("demo-corpus")(corpus_cmds.demo_corpus)
app.command("init")(corpus_cmds.init)
app.command("validate")(corpus_cmds.validate)
app.command("convert")(corpus_cmds.convert)
app.command("profile")(privacy_cmds.profile)
app.command("fit")(model_cmds.fit)
app.command("sample")(model_cmds.sample)
app.command("pretrain-text")(model_cmds.pretrain_text_command)
app.command("audit")(audit_cmds.audit)
app.command("gate")(release_cmds.gate_command)
app.command("release")(release_cmds.release)
app.command("verify")(release_cmds.verify)
app.command("keygen")(release_cmds.keygen)
app.command("run")(release_cmds.run)
app.add_typer(privacy_cmds.ledger_app, name="ledger")
policies_app = typer.Typer(help="The built-in release policies (default, internal, public).", no_args_is_help=True)
policies_app.command("list")(release_cmds.policies_list)
policies_app.command("show")(release_cmds.policies_show)
app.add_typer(policies_app, name="policies")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return its exit code (the console script calls this)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never let a dependency reach for the network
    err = stderr_console()
    try:
        result = app(args=list(argv) if argv is not None else None, prog_name="privsynth", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        err.print("Aborted.")
        return 130
    except TyperException as exc:  # usage errors: unknown option, bad value...
        show = getattr(exc, "show", None)
        if callable(show):
            show(file=sys.stderr)
        else:
            err.print(f"Error: {escape(exc.format_message())}")
        return ExitCode.BAD_INPUT
    except (UserError, PrivacyError) as exc:
        err.print(f"[bold red]Error:[/bold red] {escape(str(exc))}", markup=True, highlight=False)
        return ExitCode.BAD_INPUT
    except ReleaseRefusedError as exc:
        err.print(f"[bold red]Release refused[/bold red]: {escape(str(exc))}", markup=True, highlight=False)
        return ExitCode.REFUSED
    except IntegrityError as exc:
        err.print(f"[bold red]Verification failed:[/bold red] {escape(str(exc))}", markup=True, highlight=False)
        return ExitCode.INTEGRITY
    except Exception as exc:
        if _state["verbose"]:
            logging.getLogger("privsynth").exception("internal error")
        err.print(
            f"[bold red]Internal error[/bold red] ({type(exc).__name__}). This is a bug or an environment problem; "
            "re-run with --verbose for the traceback and report it.",
            markup=True,
        )
        return ExitCode.INTERNAL
    return int(result) if isinstance(result, int) else ExitCode.OK


def entry_point() -> None:
    """Console-script entry point."""
    sys.exit(main())
