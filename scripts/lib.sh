# Shell functions the test and benchmark scripts share. Source it from the repository root:
# `. scripts/lib.sh`.

# The repository root, absolute.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# apt_install PACKAGE...: installs Debian packages quietly (through sudo unless root). Only
# errors reach stdout's readers: apt's output goes to stderr or nowhere.
apt_install() {
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

# install_missing CHECK PACKAGE [CHECK PACKAGE]...: installs each PACKAGE whose CHECK fails;
# CHECK is a command name (looked up on PATH) or, starting with /, an executable file.
install_missing() {
  local need=() check
  while [ $# -ge 2 ]; do
    check=$1
    if [ "${check#/}" != "$check" ]; then
      [ -x "$check" ] || need+=("$2")
    else
      command -v "$check" >/dev/null || need+=("$2")
    fi
    shift 2
  done
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing missing packages: ${need[*]}" >&2
    apt_install "${need[@]}"
  fi
}

# registry_config FILE STORAGE ADDR [LOG_LEVEL]: writes to FILE the configuration of a CNCF
# distribution registry storing under STORAGE with deletes enabled, listening on ADDR
# (host:port), logging at LOG_LEVEL (default warn) without an access log.
registry_config() {
  cat >"$1" <<CONFIG
version: 0.1
log:
  level: ${4:-warn}
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $2
  delete:
    enabled: true
http:
  addr: $3
CONFIG
}
