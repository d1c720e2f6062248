# Production gateway: the `gateway/` package and the wire contract it shares with the models
# (model_repository/wire.py; no model code, no weights, no torch).
# Build context is the repository root: docker-compose.yml sets it.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY deploy/gateway-requirements.txt /tmp/gateway-requirements.txt
RUN pip install -r /tmp/gateway-requirements.txt && pip check && rm /tmp/gateway-requirements.txt

COPY deploy/gateway-entrypoint.sh /usr/local/bin/gateway-entrypoint
COPY gateway/ /app/gateway/
COPY model_repository/wire.py /app/model_repository/wire.py
RUN chmod 0755 /usr/local/bin/gateway-entrypoint \
    && python -m compileall -q /app/gateway /app/model_repository \
    && useradd --system --uid 10001 --no-create-home gateway \
    && install -d -o gateway -g gateway /var/lib/epithre

USER gateway
# EPITHRE_DATA_DIR: the database and the uploaded files; mount a volume there to keep them.
ENV EPITHRE_HOST=0.0.0.0 \
    EPITHRE_PORT=8000 \
    EPITHRE_DATA_DIR=/var/lib/epithre
VOLUME /var/lib/epithre
EXPOSE 8000
ENTRYPOINT ["/usr/local/bin/gateway-entrypoint"]
