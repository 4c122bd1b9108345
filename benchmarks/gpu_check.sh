#!/usr/bin/env bash
# The GPU acceptance checks (benchmarks/gpu_check.py) with the repository's virtual environment; arguments pass through.
#   benchmarks/gpu_check.sh            on a CUDA machine: < 5 minutes, no internet; exit 1 if any check FAILs
#   benchmarks/gpu_check.sh --cpu      the same on the CPU (CUDA hidden), CUDA-only checks SKIP
# PYTHON=/path/to/python overrides the interpreter (default: .venv/bin/python beside this folder, else python3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  if [[ -x "$ROOT/.venv/bin/python" ]]; then PY="$ROOT/.venv/bin/python"; else PY="$(command -v python3)"; fi
fi
exec "$PY" "$ROOT/benchmarks/gpu_check.py" "$@"
