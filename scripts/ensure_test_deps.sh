#!/usr/bin/env bash
# System packages the tests need beyond Python ones (installed once, as root).
# chromium: the leaderboard site is checked in a real headless browser
# (tests/test_leaderboard_browser.py, which skips with a reason without it).
set -euo pipefail
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "ensure_test_deps: installing chromium for the browser test" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "ensure_test_deps: /usr/bin/chromium missing and not root: the browser test will be skipped" >&2
    fi
fi
