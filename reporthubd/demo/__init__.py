"""`reporthubd demo`: the daemon with sample data and reports in a local folder, no setup needed.

On a fresh machine (no database server, no configuration) it creates, or reuses, a folder holding:

- `config.toml`: the demo's settings (a SQLite store, the workspace, INFO logs);
- `store.db`: the SQLite store (migrated on start);
- `sales.db`: a SQLite sample datasource, about 100,000 orders generated here from a fixed seed
  (regions, products, customers with accented and CJK names, decimal amounts, UTC timestamps)
  over the 90 days up to the day (UTC) it is generated. It is reused for the rest of that day;
  on a later day (or after a demo upgrade that changed the generator) it is generated again, so
  "yesterday" and "the last hour" always hold orders: the same rows, shifted to the new day,
  written to a temporary file renamed over the old one (about half a second);
- `reports/`: where the demo reports' file-share deliveries write their files.

The demo reports are the catalog file `reporthubd/demo_catalog.toml`, applied through
`store.catalog.apply` on every start (matched by name: a second run changes nothing). Then the
daemon starts with its control plane on 127.0.0.1 (port 8000, or a free port when 8000 is taken
and no `--listen` was given), runs one report at once so that a file lands without waiting for
the next minute, and prints what to open and what to try. Ctrl-C stops it (exit 0).

Modules: `dataset` generates the sample sales database, `reports` applies the demo catalog to
the store, `listen` picks the control plane's address, `banner` says what to open and what to
try, and `command` runs it all (`reporthubd.cli` calls `command.main`).
"""
