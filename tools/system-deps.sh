#!/usr/bin/env bash
# Installs the system packages the project needs, with apt-get, only when missing.
#   tools/system-deps.sh build   what `pip install` of the project needs: python3-venv, and
#                                Node.js (nodejs) to build the JupyterLab extension in
#                                labextension/ (Debian 12's Node 18 will do; no npm needed:
#                                jlpm, shipped with jupyter-builder, is the package manager)
#   tools/system-deps.sh         the above, plus make and chromium (browser tests: JupyterLab
#                                in headless Chromium via Playwright, which uses
#                                /usr/bin/chromium; never `playwright install`)
# Idempotent and quiet; apt's output is shown only when it fails.
set -euo pipefail

missing=()
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if [ "${1:-all}" != build ]; then
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v make >/dev/null 2>&1 || missing+=(make)
fi
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
