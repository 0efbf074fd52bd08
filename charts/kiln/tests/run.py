"""Runs the kiln chart's tests (plain python; scripts/chart-test sets up the pinned venv).

    .venv-chart/bin/python charts/kiln/tests/run.py [substring ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True

import kilntest  # noqa: E402

# Importing a module registers its tests; a missing package fails here, loudly.
import test_chart  # noqa: E402,F401
import test_admission_policy  # noqa: E402,F401
import test_argocd_health  # noqa: E402,F401
import test_monitoring  # noqa: E402,F401
import test_checkov  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(kilntest.run(sys.argv[1:]))
