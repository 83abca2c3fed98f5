"""Start bqemulator offline: run by the bqemulator venv's Python (not part of the test package).

bqemulator downloads DuckDB's spatial and avro extensions at start; without network that fails
slowly, so both loaders become no-ops (no GEOGRAPHY, no Avro loads in the tests).
"""

import sys

from bqemulator.cli import main
from bqemulator.storage import engine

engine.DuckDBEngine._load_spatial = lambda self, *args, **kwargs: None
if hasattr(engine.DuckDBEngine, "_load_format_extensions"):
    engine.DuckDBEngine._load_format_extensions = lambda self, *args, **kwargs: None

sys.exit(main())
