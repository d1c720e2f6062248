#!/bin/sh
# Loads the exported ensembles by name (Triton loads the models they are composed of), so that
# the committed but unconfigured image models of a text-only export are left alone; the same rule
# as runner/triton.py's `ensembles()` for the local server.
# Accepts the gateway's keepalive pings (one a second: KEEPALIVE_TIME_MS in
# model_repository/wire.py), which Triton's default ping policy answers with GOAWAY
# too_many_pings: the flags of runner/triton.py's KEEPALIVE_FLAGS, which a unit test keeps equal.
set -eu
repository=/models
loads=""
for config in "$repository"/*/config.pbtxt; do
    if grep -q 'platform: "ensemble"' "$config"; then
        loads="$loads --load-model=$(basename "$(dirname "$config")")"
    fi
done
keepalive="--grpc-keepalive-time=1000 --grpc-keepalive-timeout=1000"
keepalive="$keepalive --grpc-keepalive-permit-without-calls=true --grpc-http2-max-pings-without-data=0"
keepalive="$keepalive --grpc-http2-min-recv-ping-interval-without-data=1000"
keepalive="$keepalive --grpc-http2-max-ping-strikes=0"
# shellcheck disable=SC2086 # one word per flag
exec /opt/nvidia/nvidia_entrypoint.sh "$@" --model-control-mode=explicit $keepalive $loads
