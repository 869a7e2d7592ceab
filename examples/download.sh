#!/usr/bin/env bash
# Download a large file from a hub, interrupt the download half-way, resume it
# with `curl -C -` (which asks for `Range: bytes=<what we have>-`), and check
# that the result is byte-identical to the original.
#
#   sse-hub serve --files-dir /tmp/artefacts &
#   examples/download.sh /tmp/artefacts                # hub on http://127.0.0.1:8080
#   examples/download.sh /tmp/artefacts http://127.0.0.1:9000
#
# FILES_DIR must be the hub's --files-dir: the script puts a file of SIZE_MIB
# MiB of random bytes there (example.bin, kept for the next run) and leaves the
# download in a temporary directory that it removes at the end.
set -euo pipefail

files_dir=${1:?usage: $0 FILES_DIR [HUB_URL]}
hub_url=${2:-http://127.0.0.1:8080}
size_mib=${SIZE_MIB:-1024}
rate=${RATE:-100M}        # bytes per second for the first, interrupted attempt
name=example.bin
url="$hub_url/files/$name"
source_file="$files_dir/$name"

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
target="$workdir/$name"

if [[ ! -f $source_file || $(stat -c %s "$source_file") -ne $((size_mib << 20)) ]]; then
    echo "creating $source_file ($size_mib MiB of random bytes)"
    head -c "${size_mib}M" /dev/urandom > "$source_file.part"
    mv "$source_file.part" "$source_file"
fi

echo "1. downloading $url at $rate/s, interrupted after 2 seconds"
status=0
timeout --signal INT 2 curl --silent --show-error --fail --limit-rate "$rate" \
    --output "$target" "$url" || status=$?
if [[ $status -ne 124 ]]; then
    echo "expected the download to be interrupted (exit 124), got exit $status" >&2
    exit 1
fi
echo "   have $(stat -c %s "$target") of $(stat -c %s "$source_file") bytes"

echo "2. resuming with curl -C -"
curl --silent --show-error --fail --continue-at - --output "$target" "$url" \
    --write-out '   HTTP %{http_code}, %{size_download} more bytes at %{speed_download} B/s\n'

echo "3. comparing checksums"
expected=$(sha256sum < "$source_file" | cut -d' ' -f1)
actual=$(sha256sum < "$target" | cut -d' ' -f1)
echo "   original   $expected"
echo "   downloaded $actual"
if [[ $expected != "$actual" ]]; then
    echo "checksums differ" >&2
    exit 1
fi
echo "identical"
