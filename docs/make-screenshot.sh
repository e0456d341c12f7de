#!/usr/bin/env bash
# Makes docs/status.png: runs tests/status_page.rs (a gateway with the cloud down, three buffered
# notifications and one unknown path) and has it save a 1280×900 screenshot of /status taken by
# headless Chromium.
#
# Needs chromium, and a CJK font for the Chinese labels (the page names the usual Windows, macOS
# and Linux fonts and uses whichever the viewing machine has):
#   apt-get install --no-install-recommends chromium fonts-wqy-microhei
set -euo pipefail
cd "$(dirname "$0")/.."
# TZ: show times as a box in China would (UTC+08:00).
TZ=Asia/Shanghai PREFRONT_SCREENSHOT="$PWD/docs/status.png" cargo test --test status_page -- --nocapture
echo "wrote docs/status.png"
