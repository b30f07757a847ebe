#!/usr/bin/env bash
# Creates .venv-oras (PyPI oras, a third-party OCI artifact client that the referrer tests use
# to push an artifact with a `subject`) when it is missing or holds another oras version, and
# prints the path of its python.
# Usage: ORAS_PYTHON="$(scripts/oras.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: the manifests oras writes (its config media type, its annotations) are what the
# tests read back.
exec scripts/venv.sh .venv-oras oras 0.2.43 python
