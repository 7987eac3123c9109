"""`lockstep` with a timestamp at each hop of the reaction path: what `bench/run.py --trace` runs
as the operator (benchlib.reaction_trace says what is noted, and where).

    LOCKSTEP_BENCH_TRACE=FILE PYTHONPATH=bench .venv/bin/python bench/traced_operator.py \\
        operator ...
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from benchlib import reaction_trace

if __name__ == "__main__":
    reaction_trace.install(Path(os.environ["LOCKSTEP_BENCH_TRACE"]))
    from lockstep.cli.main import main

    sys.argv[0] = "lockstep"
    sys.exit(main())
