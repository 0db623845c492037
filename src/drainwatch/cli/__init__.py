"""The command line: parse, build one frozen plan, call the library once, map errors to exit codes.

    cli.commands      the ``drainwatch`` group and its small commands
    cli.run_options   ``drainwatch run``: its options and the plan they build
    cli.boundary      the one error boundary and the scoped signal handling

May import every other package of drainwatch; nothing imports it (see docs/architecture.md).
"""

from drainwatch.cli import boundary
from drainwatch.cli.commands import cli


def main() -> None:
    """Entry point of the ``drainwatch`` command."""
    boundary.main(cli)
