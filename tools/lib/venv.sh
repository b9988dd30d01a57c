# Sourced by the tools: the checkout's virtual environment (.venv, made by
# tools/install-deps) goes first on PATH. python3, pytest, ruff, mypy, iscsiha and
# iscsiha-lab are then the venv's, for the tool and for every python3 or iscsiha the
# tests and the lab start on the host, without anyone activating the venv.
venv=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/.venv
export PATH="$venv/bin:$PATH"
