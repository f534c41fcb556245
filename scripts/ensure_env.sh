#!/usr/bin/env bash
# Creates (once) and prints the path of this checkout's Python environment, .venv.
#
# The heavy dependencies (torch, timm, ...) live in one environment in the user
# cache, keyed by a hash of pyproject.toml's pins, so every clone and worktree
# reuses it and a changed pin builds a new one. Each checkout gets a small .venv
# of its own that sees those packages through a .pth file and installs this
# checkout editable (seconds, no downloads).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${CLBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/clbench}
python=${PYTHON:-python3}
key=$("$python" - "$repo/pyproject.toml" <<'PY'
import hashlib, sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
blob = repr((p["dependencies"], p["optional-dependencies"]["dev"], sys.version_info[:2]))
print(hashlib.sha256(blob.encode()).hexdigest()[:12])
PY
)
venv="$cache/venv-$key"
if [ ! -f "$venv/.complete" ]; then
  echo "clbench: building the Python environment in $venv (once, about 3 minutes)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  # torch first and exactly pinned: it is the CPU wheel this machine image ships;
  # installing it before anything else keeps pip from choosing a CUDA build.
  "$venv/bin/pip" install -q torch==2.13.0 "setuptools>=70" wheel >&2
  deps=$("$python" - "$repo/pyproject.toml" <<'PY'
import sys, tomllib
p = tomllib.load(open(sys.argv[1], "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))
PY
)
  echo "$deps" > "$venv/requirements.txt"
  "$venv/bin/pip" install -q -r "$venv/requirements.txt" >&2
  touch "$venv/.complete"
fi
[ "${1:-}" = "--deps-only" ] && { echo "$venv"; exit 0; }
local_venv="$repo/.venv"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ ! -f "$local_venv/.deps" ] || [ "$(cat "$local_venv/.deps")" != "$venv" ]; then
  rm -rf "$local_venv"
  # No pip of its own: pip, setuptools and wheel come from the shared environment.
  "$python" -m venv --without-pip "$local_venv"
  local_site=$("$local_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$site" > "$local_site/_clbench_deps.pth"
  "$local_venv/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$repo" >&2
  echo "$venv" > "$local_venv/.deps"
fi
echo "$local_venv"
