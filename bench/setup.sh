#!/usr/bin/env bash
# What `make bench` needs beyond `make venv`: nginx with the nchan module (Debian packages,
# installed with apt-get when missing) and the 'bench' extra (uvloop, sse-starlette, uvicorn,
# httptools, py-spy) in the project's virtualenv. Safe to run again: it only adds what is missing.
set -euo pipefail
PYTHON=${1:-.venv/bin/python}
cd "$(dirname "$0")/.."

have_nchan() {
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || return 1
    [ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || [ -f /usr/share/nginx/modules/ngx_nchan_module.so ]
}

if ! have_nchan; then
    if command -v apt-get >/dev/null 2>&1; then
        echo "bench: installing nginx and libnginx-mod-nchan with apt-get"
        SUDO=$( [ "$(id -u)" = 0 ] || echo sudo )
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx libnginx-mod-nchan >/dev/null
    else
        echo "bench: no apt-get; install nginx and its nchan module by hand, or the nchan column stays empty" >&2
    fi
fi

if ! "$PYTHON" -c 'import uvloop, sse_starlette, uvicorn, httptools' >/dev/null 2>&1 \
   || ! [ -x "$(dirname "$PYTHON")/py-spy" ]; then
    echo "bench: installing the 'bench' extra"
    "$PYTHON" -m pip install --quiet -e ".[bench]"
fi
