#!/usr/bin/env bash
# Installs the system packages the project needs, with apt-get, only when missing:
# chromium (browser tests: JupyterLab in headless Chromium via Playwright, which uses
# /usr/bin/chromium; never `playwright install`), make and python3-venv.
# Idempotent and quiet; apt's output is shown only when it fails.
set -euo pipefail

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v make >/dev/null 2>&1 || missing+=(make)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
[ "${#missing[@]}" -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing ${missing[*]} with apt-get" >&2
log="$(mktemp)"
if ! { $SUDO apt-get update -qq &&
       $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "apt-get install ${missing[*]} failed" >&2
    exit 1
fi
rm -f "$log"
