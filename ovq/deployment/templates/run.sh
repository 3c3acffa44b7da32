#!/usr/bin/env bash
# Run this bundle's pipeline.
#   ./run.sh --setup          create/refresh .venv next to this script (as the owner of this folder), then exit;
#                             a bundle built with --offline installs from wheels/ only (no network)
#   ./run.sh [options]        run the pipeline; options go to `ovq pipeline` (--check, --max-frames N, --device D)
# Environment: OVQ_VENV (venv folder, default ./.venv), PYTHON (interpreter for the venv, default python3),
#              OVQ_VENV_OPTIONS (extra `python -m venv` options), OVQ_CACHE_DIR (compiled-model cache).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${OVQ_VENV:-$HERE/.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.ovq-bundle"
want="$(cat "$HERE/requirements.txt" "$HERE"/wheels/ovq-*.whl | sha256sum | cut -d' ' -f1)"

setup() (
  umask 022  # the venv is for the service user too (install.sh runs this as root), whatever the caller's umask
  echo "run.sh: installing into $VENV" >&2
  # shellcheck disable=SC2086
  "$PYTHON" -m venv --clear ${OVQ_VENV_OPTIONS:-} "$VENV"
  local pip=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
  if [ -f "$HERE/wheels/OFFLINE" ]; then
    # only wheels/: no index, and (--isolated) no pip.conf or PIP_* variables adding other places
    pip+=(--isolated --no-index --find-links "$HERE/wheels")
  fi
  "${pip[@]}" -r "$HERE/requirements.txt"
  "${pip[@]}" --no-deps --force-reinstall "$HERE"/wheels/ovq-*.whl
  echo "$want" > "$STAMP"
)

if [ "${1:-}" = "--setup" ]; then
  setup
  exit 0
fi
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  if [ -w "$(dirname "$VENV")" ] && { [ ! -e "$VENV" ] || [ -w "$VENV" ]; }; then
    setup
  else
    echo "run.sh: $VENV is missing or outdated and not writable here; run '$HERE/run.sh --setup' as its owner" >&2
    exit 1
  fi
fi
cd "$HERE"
exec "$VENV/bin/ovq" pipeline "$HERE/pipeline.yaml" "$@"
