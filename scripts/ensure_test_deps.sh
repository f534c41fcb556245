#!/usr/bin/env bash
# System packages the tests need beyond Python ones (installed once, as root).
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
