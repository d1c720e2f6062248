#!/bin/sh
# Loads the exported ensembles by name (Triton loads the models they are composed of), so that
# the committed but unconfigured image models of a text-only export are left alone; the same rule
# as runner/triton.py's `ensembles()` for the local server.
set -eu
repository=/models
loads=""
for config in "$repository"/*/config.pbtxt; do
    if grep -q 'platform: "ensemble"' "$config"; then
        loads="$loads --load-model=$(basename "$(dirname "$config")")"
    fi
done
# shellcheck disable=SC2086 # one word per flag
exec /opt/nvidia/nvidia_entrypoint.sh "$@" --model-control-mode=explicit $loads
