#!/usr/bin/env bash
# Writes docs/nsbind.1, the man page, from nsbind's command tree (the same
# definitions as its help and completion). TestManPage fails until the
# page written here is committed.
#
#   scripts/manpage.sh        writes docs/nsbind.1
#   man -l docs/nsbind.1      reads it
set -euo pipefail
cd "$(dirname "$0")/.."
go test -count=1 -run '^TestManPage$' ./cmd/nsbind -args -update
echo "wrote docs/nsbind.1" >&2
