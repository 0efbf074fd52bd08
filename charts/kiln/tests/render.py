"""Prints the chart rendered by the real Helm engine as one multi-document YAML stream (no
NOTES.txt), for tools that need the manifests, e.g. the API test server's RBAC and admission
policy tests.

    .venv-chart/bin/python charts/kiln/tests/render.py [values.yaml ...] [--name kiln] [--namespace kiln-system]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.dont_write_bytecode = True

import yaml  # noqa: E402

from kilntest import NAMESPACE, RELEASE, objects  # noqa: E402
from test_chart import merged  # noqa: E402

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("values", nargs="*", help="values files, later ones win (as helm -f)")
    ap.add_argument("--name", default=RELEASE)
    ap.add_argument("--namespace", default=NAMESPACE)
    a = ap.parse_args()
    values: dict = {}
    for f in a.values:
        values = merged(values, yaml.safe_load(Path(f).read_text()) or {})
    docs = objects(values, name=a.name, namespace=a.namespace)
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False))
