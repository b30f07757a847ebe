#!/usr/bin/env bash
# Creates the virtualenv VENV holding PACKAGE==VERSION (and the other pinned PIP_PACKAGES) when
# it is missing or holds another version of PACKAGE, and prints the path of VENV/bin/BINARY.
# Installs python3-venv first when the system python cannot make virtualenvs.
# Usage: scripts/venv.sh VENV PACKAGE VERSION BINARY [PIP_PACKAGES...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

VENV=$1 PACKAGE=$2 VERSION=$3 BINARY=$4
shift 4

installed=""
if [ -x "$VENV/bin/python" ]; then
  installed="$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('$PACKAGE'))" 2>/dev/null || true)"
fi
if [ "$installed" != "$VERSION" ] || [ ! -x "$VENV/bin/$BINARY" ]; then
  echo "creating $VENV with $PACKAGE $VERSION" >&2
  if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  rm -rf "$VENV"
  python3 -m venv "$VENV" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check "$PACKAGE==$VERSION" "$@" >&2
fi
echo "$PWD/$VENV/bin/$BINARY"
