#!/usr/bin/env bash
# Runs every test of the workspace. Installs what is missing first:
#   Debian: docker-registry (CNCF distribution), skopeo (interop peer), apache2-utils (htpasswd),
#           buildah and busybox-static (builds), openssl (GCP test keys), chromium (the
#           headless browser of the `mirror serve` test).
#   PyPI:   moto in .venv-moto (the ECR control plane of provider-aws's tests), by scripts/moto.sh;
#           oras in .venv-oras (a third-party artifact client for the referrer tests), by
#           scripts/oras.sh.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

install_missing docker-registry docker-registry skopeo skopeo htpasswd apache2-utils \
  buildah buildah busybox busybox-static openssl openssl chromium chromium

MOTO_SERVER="$(scripts/moto.sh)"
export MOTO_SERVER
ORAS_PYTHON="$(scripts/oras.sh)"
export ORAS_PYTHON

cargo test --workspace --all-features "$@"
