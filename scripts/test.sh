#!/usr/bin/env bash
# Installs what the tests need, then runs every test (as root: the tests build
# real containers). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install.sh --test
exec .venv/bin/python -m pytest -n 4 --dist loadfile "$@"
