"""The ``keyguard`` command. Subcommands live in their own modules and load on use."""

from __future__ import annotations

import importlib
import sys

import click

from keyguard import __version__

# name -> "module:attribute"; loaded only when that subcommand runs, so `keyguard --help`
# and the fast paths (`keyguard redact`) do not import what they do not use.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("keyguard.cli.init", "Write a starter policy, .env.template and .gitignore entries."),
    "check": ("keyguard.cli.check", "Validate the environment against the policy."),
    "template": ("keyguard.cli.template", "Regenerate .env.template from the policy."),
    "get": ("keyguard.cli.get", "Show a secret's masked form and where it came from."),
    "policy": ("keyguard.cli.policy", "Validate and explain policy files."),
    "redact": ("keyguard.cli.redact", "Redact secrets from standard input, line by line."),
    "scan": ("keyguard.cli.scan", "Scan files (and git history) for secrets."),
    "doctor": ("keyguard.cli.doctor", "Check a project against the security checklist."),
    "run": ("keyguard.cli.run", "Run a command with granted secrets and redacted output."),
    "migrate": ("keyguard.cli.migrate", "Find code that reads secrets straight from the env."),
    "gh-sync": ("keyguard.cli.gh_sync", "Set GitHub repository secrets from the store."),
    "demo": ("keyguard.cli.demo", "Run the offline demo: an agent that tries to leak keys."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module = importlib.import_module(COMMANDS[cmd_name][0])
            return module.command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in sorted(COMMANDS)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="keyguard")
def cli() -> None:
    """keyguard guards API keys in agent runtimes.

    Keys are injected only at the transport edge, towards the hosts the policy allows;
    everything else (prompts, outputs, logs) is redacted.
    """


def main(argv: list[str] | None = None) -> None:
    # Usage errors exit 2 (click's default); our commands exit 0 clean / 1 problems.
    cli.main(args=argv, prog_name="keyguard", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
