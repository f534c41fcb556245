#!/usr/bin/env bash
# System packages the tests need beyond Python ones (installed once, as root).
# chromium: the leaderboard site is checked in a real headless browser
# (tests/test_leaderboard_browser.py, which skips with a reason without it).
set -euo pipefail
# Fashion-MNIST (31 MB, MIT): the `fashion-mnist` scenario reads it from
# /usr/share/datasets/fashion-mnist/ when present.
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -q dataset-fashion-mnist >&2 || { apt-get update -q >&2 && apt-get install -y -q dataset-fashion-mnist >&2; }
  else
    echo "clbench: run 'sudo apt-get install dataset-fashion-mnist' for the Fashion-MNIST tests" >&2
  fi
fi
if [ ! -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "ensure_test_deps: installing chromium for the browser test" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        echo "ensure_test_deps: /usr/bin/chromium missing and not root: the browser test will be skipped" >&2
    fi
fi
