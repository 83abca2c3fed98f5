"""The subcommands that work on the store, one module each: `check`, `db`, `execute`, and
`apply`/`export` (`catalog`). `reporthubd.cli` parses the command line and imports the chosen
module only, so `reporthubd version` and `--help` load neither SQLAlchemy nor the engine.

Each command opens the store through `reporthubd.bootstrap` and returns its exit code: 0 all
well, 1 a problem found or a failure (a store that cannot be used included), 2 invalid usage.
"""

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
