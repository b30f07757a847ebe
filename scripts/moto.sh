#!/usr/bin/env bash
# Creates .venv-moto (PyPI moto, the ECR control-plane emulator of provider-aws's tests) when
# it is missing or holds another moto version, and prints the path of its moto_server.
# Usage: MOTO_SERVER="$(scripts/moto.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: moto's ECR answers (digests, token expiry, error codes) are what the tests expect
# (keep in step with provider-aws's MOTO_PIP).
exec scripts/venv.sh .venv-moto moto 5.2.5 moto_server "flask==3.1.3" "flask-cors==6.0.5" "boto3==1.44.8"
