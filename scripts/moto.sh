#!/usr/bin/env bash
# Creates .venv-moto (PyPI moto, the ECR control-plane emulator of provider-aws's tests) when
# it is missing or holds another moto version, and prints the path of its moto_server.
# Usage: MOTO_SERVER="$(scripts/moto.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: moto's ECR answers (digests, token expiry, error codes) are what the tests expect.
MOTO_VERSION=5.2.5
PIP_PACKAGES=("moto==${MOTO_VERSION}" "flask==3.1.3" "flask-cors==6.0.5" "boto3==1.44.8")
VENV=.venv-moto

installed=""
if [ -x "$VENV/bin/python" ]; then
  installed="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || true)"
fi
if [ "$installed" != "$MOTO_VERSION" ] || [ ! -x "$VENV/bin/moto_server" ]; then
  echo "creating $VENV with moto $MOTO_VERSION" >&2
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-venv >/dev/null
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PIP_PACKAGES[@]}" >&2
fi
echo "$PWD/$VENV/bin/moto_server"
