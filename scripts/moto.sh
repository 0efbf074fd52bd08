#!/usr/bin/env bash
# Installs the pinned moto server (the AWS emulator kiln-aws's integration tests run against)
# into .venv-moto at the repository root, unless it is already there at the pinned version.
# See ../shared/TESTBED.md for what moto does and does not emulate.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO_VERSION="5.2.5"
venv=".venv-moto"

if [ -x "$venv/bin/moto_server" ] && "$venv/bin/python" -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
  exit 0
fi
echo "== installing moto[server]==$MOTO_VERSION into $venv"
python3 -m venv "$venv"
# Every package pinned (scripts/moto-requirements.txt), not only moto, so runs are reproducible.
"$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/moto-requirements.txt
