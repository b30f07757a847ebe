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

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v buildah >/dev/null || need+=(buildah)
[ -x /bin/busybox ] || command -v busybox >/dev/null || need+=(busybox-static)
command -v openssl >/dev/null || need+=(openssl)
command -v chromium >/dev/null || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing missing packages: ${need[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

MOTO_SERVER="$(scripts/moto.sh)"
export MOTO_SERVER
ORAS_PYTHON="$(scripts/oras.sh)"
export ORAS_PYTHON

cargo test --workspace --all-features "$@"
