#!/bin/sh
# Print the path of a Python X.Y interpreter (default 3.13, the version Flex Consumption runs), or fail saying how
# to get one. Looks, in order: pythonX.Y on PATH, pyenv's installed versions, then asks pyenv to install it.
#
#   scripts/find-python.sh          # → /root/.pyenv/versions/3.13.0/bin/python
#   scripts/find-python.sh 3.11
set -eu
want="${1:-3.13}"

is_version() { "$1" -c "import sys; sys.exit(sys.version_info[:2] != tuple(map(int, '$want'.split('.'))))" 2>/dev/null; }

if command -v "python$want" >/dev/null 2>&1 && is_version "python$want"; then
  command -v "python$want"
  exit 0
fi
if command -v pyenv >/dev/null 2>&1 || [ -x "${PYENV_ROOT:-$HOME/.pyenv}/bin/pyenv" ]; then
  pyenv="$(command -v pyenv 2>/dev/null || echo "${PYENV_ROOT:-$HOME/.pyenv}/bin/pyenv")"
  # the newest installed patch release of X.Y
  found="$("$pyenv" versions --bare 2>/dev/null | grep -E "^$want\.[0-9]+$" | sort -t. -k3 -n | tail -n 1 || true)"
  if [ -z "$found" ] && "$pyenv" install --skip-existing "$want" >&2; then
    found="$("$pyenv" versions --bare | grep -E "^$want\.[0-9]+$" | sort -t. -k3 -n | tail -n 1 || true)"
  fi
  if [ -n "$found" ] && is_version "$("$pyenv" root)/versions/$found/bin/python"; then
    echo "$("$pyenv" root)/versions/$found/bin/python"
    exit 0
  fi
fi
echo "no Python $want found: install it (pyenv install $want, or your OS's python$want) and run make again" >&2
exit 1
