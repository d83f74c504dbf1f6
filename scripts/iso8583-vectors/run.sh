#!/usr/bin/env bash
# Regenerates iso8583/tests/vectors/*.jsonl with pyiso8583 (test-only; the Rust test that reads
# the vectors needs neither Python nor this script). The venv lives outside the repository.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${ISO8583_VENV:-$HOME/.cache/iso8583-venv}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q "pyiso8583==4.0.1" "ebcdic==2.0.1"
"$venv/bin/python" "$here/generate.py" "$@"
