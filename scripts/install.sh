#!/usr/bin/env bash
# Install pip requirements into a virtual environment: with uv where it can be had (seconds where pip takes minutes),
# else with pip. uv is the one on PATH, or one pip-installed into the environment first; pip's find-links (a local
# wheel folder, from $PIP_FIND_LINKS or pip's configuration) are passed on to uv. Both write the packages' bytecode at
# install (pip by default, uv asked to): where PYTHONDONTWRITEBYTECODE is set, a Python that finds none compiles every
# module it imports, each time (about 6 s of each notebook kernel's start on torch and transformers).
# Usage: scripts/install.sh VENV PYTHON REQUIREMENT...   (e.g. scripts/install.sh .venv python3 -e ".[test]")
set -euo pipefail
venv=${1:?usage: $0 VENV PYTHON REQUIREMENT...}; python=${2:?}; shift 2
test -x "$venv/bin/python" || "$python" -m venv "$venv"
if [ -z "${LRMSAFETY_NO_UV:-}" ]; then
  uv=$(command -v uv || true)
  if [ -z "$uv" ] && "$venv/bin/python" -m pip install -q uv >/dev/null 2>&1; then uv="$venv/bin/python -m uv"; fi
  if [ -n "$uv" ]; then
    # pip's local wheel folders (environment or pip.conf), which uv does not read by itself
    configured=$("$venv/bin/python" -m pip config get global.find-links 2>/dev/null || true)
    links=(); for l in ${PIP_FIND_LINKS:-} $configured; do links+=(--find-links "$l"); done
    if VIRTUAL_ENV="$venv" $uv pip install -q --compile-bytecode --python "$venv/bin/python" "${links[@]}" "$@"; then exit 0; fi
    echo "uv could not install $*: installing with pip" >&2
  fi
fi
"$venv/bin/python" -m pip install -q "$@"
