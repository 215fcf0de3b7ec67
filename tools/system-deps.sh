#!/usr/bin/env bash
# Installs the system packages the project needs, with apt-get, only when missing.
#   tools/system-deps.sh build   what `pip install` of the project needs: python3-venv, and
#                                Node.js (nodejs) to build the JupyterLab extension in
#                                labextension/ (Debian 12's Node 18 will do; no npm needed:
#                                jlpm, shipped with jupyter-builder, is the package manager)
#   tools/system-deps.sh         the above, plus make and chromium (browser tests: JupyterLab
#                                in headless Chromium via Playwright, which uses
#                                /usr/bin/chromium; never `playwright install`), and what the
#                                test hosts in tests/hosts/ run on: network namespaces and
#                                unshare (iproute2, util-linux), sshd (openssh-server, with
#                                its client), a single-node Slurm (slurm-wlm, munge) and MPI
#                                engines (mpich; mpi4py comes from the lock)
# Idempotent and quiet; apt's output is shown only when it fails.
set -euo pipefail

missing=()
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if [ "${1:-all}" != build ]; then
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v make >/dev/null 2>&1 || missing+=(make)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v ssh >/dev/null 2>&1 || missing+=(openssh-client)
    [ -x /usr/sbin/slurmctld ] && [ -x /usr/sbin/slurmd ] || missing+=(slurm-wlm)
    [ -x /usr/sbin/munged ] || missing+=(munge)
    command -v mpiexec.mpich >/dev/null 2>&1 || missing+=(mpich)
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
