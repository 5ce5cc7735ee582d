"""The `volprobe` command: one entry point, imports only what the chosen subcommand needs.

`volprobe probe …` runs inside every probe pod, so this module and everything on that path must
stay standard-library only and cheap to import; the controller's dependencies are imported
lazily, inside the subcommands that need them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

USAGE = """usage: volprobe <command> [options]

commands:
  probe       run the IO check inside a probe pod (the agent)
  controller  run the controller (watches StorageProbes, runs probes, serves /metrics)
  check       run every probe once against the current cluster and report
  check-objectstore
              run an ObjectStoreProbe's checks once from here and report
  cleanup     delete every probe pod and claim in a namespace (run before uninstalling)
  version     print the version (also: --version)
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "probe":
        from volprobe.agent import main as agent_main

        return agent_main(rest)
    if command == "controller":
        from volprobe.commands.controller import main as controller_main

        return controller_main(rest)
    if command == "check":
        from volprobe.commands.check import main as check_main

        return check_main(rest)
    if command == "check-objectstore":
        from volprobe.commands.check_objectstore import main as check_objectstore_main

        return check_objectstore_main(rest)
    if command == "cleanup":
        from volprobe.commands.cleanup import main as cleanup_main

        return cleanup_main(rest)
    if command in ("version", "--version"):
        from volprobe import __version__

        print(__version__)
        return 0
    print(f"volprobe: unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
    return 2


def kubectl_plugin() -> int:
    """`kubectl volprobe …` is `volprobe …`; kubectl finds `kubectl-volprobe` on PATH."""
    return main()


if __name__ == "__main__":
    sys.exit(main())
