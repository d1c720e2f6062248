#!/bin/sh
# Refuses to start the public API without bearer keys: an empty EPITHRE_API_KEYS would turn
# authentication off (see gateway/settings.py), which is never wanted in production.
set -eu
: "${EPITHRE_API_KEYS:?set EPITHRE_API_KEYS to the comma-separated bearer keys}"
if [ -z "$(printf '%s' "$EPITHRE_API_KEYS" | tr -d ' ,\t')" ]; then
    echo "EPITHRE_API_KEYS holds no key: set it to the comma-separated bearer keys" >&2
    exit 64
fi
exec python -m gateway "$@"
