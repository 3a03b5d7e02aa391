#!/usr/bin/env bash
# Installs a pinned cargo tool from crates.io when it is missing or at another version.
# usage: cargo-tool.sh CRATE VERSION SUBCOMMAND   (e.g. cargo-tool.sh cargo-deny 0.19.0 deny)
set -euo pipefail
crate=$1 version=$2 sub=$3
if cargo "$sub" --version 2>/dev/null | grep -q " $version\b"; then
  exit 0
fi
echo "installing $crate $version from crates.io (one-time, a few minutes)..." >&2
cargo install --locked --quiet "$crate" --version "$version" >&2
