#!/usr/bin/env bash
# The main job: set up, then distil a small CNN from a CNN teacher on real MNIST digits and write a report.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
bash tools/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/kd-vision distill --recipe hinton-kd "$@"
