#!/usr/bin/env bash
# Outbox benchmark: raw fsync rate vs durable (group-committed) enqueue rate vs drain rate, on
# the disk under the repository's target/ directory (not /tmp, which may be tmpfs).
#
#   bench/outbox.sh [--dir DIR] [--secs N] [--threads 64] [--body 1024] [--routes 4]
#                   [--json FILE] [--keep]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
exec cargo run --release --example outbox_bench -- "$@"
