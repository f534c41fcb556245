#!/usr/bin/env bash
# System packages the tests need beyond Python ones (installed once, as root).
set -euo pipefail
true
