# Everything a fresh machine needs: `make serve` and `make test` do all set-up themselves.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --disable-pip-version-check -q -c requirements/constraints.txt
CHECKPOINT ?=
REPOSITORY := model_repository
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# No hub access exists: every model comes from a local folder.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONPATH := $(CURDIR)

.PHONY: install system-packages export train-demo serve cluster test bench soak lint deploy clean

install: $(VENV)/.installed

# libpython3.11: the Triton Python stub links it; docker-compose: validates docker-compose.yml;
# prometheus: its promtool tests the alert rules, and the server scrapes a test stack; haproxy:
# the load balancer of `make cluster`; redis-server: the store shared by gateway replicas;
# postgresql: the metadata database they share (`make cluster DATABASE=postgresql`, its tests).
# Their packages may start system services where an init system runs: the tests start their
# own instances on free ports, never those. haproxy lives in /usr/sbin, off some users' PATH;
# PostgreSQL in /usr/lib/postgresql/<version>/bin, off everyone's.
system-packages:
	@if ! ldconfig -p | grep -q 'libpython3.11.so.1.0' || ! command -v docker-compose >/dev/null \
		|| ! command -v promtool >/dev/null || ! PATH="$$PATH:/usr/sbin" command -v haproxy >/dev/null \
		|| ! command -v redis-server >/dev/null \
		|| ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
		$(SUDO) apt-get update -q && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q libpython3.11 docker-compose && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
			prometheus haproxy redis-server postgresql; \
	fi

$(VENV)/.installed: requirements/*.txt | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	# The local CPU wheel first: anything resolving torch later finds it satisfied.
	$(PIP) torch==2.13.0
	$(PIP) -r requirements/serve.txt -r requirements/export.txt -r requirements/test.txt \
		-r requirements/bench.txt
	touch $@

# VARIANT=int8 (CPU) or fp16 (GPU) publishes a faster tower only if its min cosine to fp32 on
# the probe texts reaches MIN_COSINE; otherwise fp32 stays served and the export fails.
VARIANT ?= fp32
MIN_COSINE ?= 0.99

export: $(VENV)/.installed
	$(BIN)/python -m export --repository $(REPOSITORY) $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) \
		--variant $(VARIANT) --min-cosine $(MIN_COSINE)

$(REPOSITORY)/embed_text/config.pbtxt: $(VENV)/.installed $(wildcard export/*.py export/demo/weights/*)
	$(MAKE) export

# Retrains the demo vision tower (seeded, deterministic; the weights are committed).
train-demo: $(VENV)/.installed
	$(BIN)/python -m export.demo.train

serve: $(REPOSITORY)/embed_text/config.pbtxt
	$(BIN)/python -m runner --model-repository $(REPOSITORY)

# The production topology on one machine: HAProxy on :8000 in front of two gateways, each with a
# channel to two tritonservers, Prometheus on :9090; every process supervised (runner/cluster.py).
# DATABASE=postgresql: the gateways keep their metadata in a PostgreSQL on :5433, not SQLite.
DATABASE ?= sqlite

cluster: $(REPOSITORY)/embed_text/config.pbtxt
	$(BIN)/python -m runner.cluster --model-repository $(REPOSITORY) --database $(DATABASE)

test: $(REPOSITORY)/embed_text/config.pbtxt
	$(BIN)/ruff check .
	$(BIN)/ruff check --target-version py310 $(REPOSITORY)
	$(BIN)/python -m pytest -q

# The peer server infinity-emb needs other library versions: its own venv, never .venv.
PEER_VENV := bench/.venv-infinity
PEER_PIP := $(PEER_VENV)/bin/pip install --disable-pip-version-check -q

$(PEER_VENV)/.installed: requirements/infinity.txt
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_PIP) --upgrade pip
	$(PEER_PIP) torch==2.13.0
	$(PEER_PIP) -r requirements/infinity.txt
	touch $@

# Throughput and latency as ratios to in-process baselines; writes docs/benchmarks.md.
bench: $(REPOSITORY)/embed_text/config.pbtxt $(PEER_VENV)/.installed
	$(BIN)/python -m bench

# Ten minutes of mixed traffic, an overload burst and a Triton kill; writes docs/reliability.md.
soak: $(REPOSITORY)/embed_text/config.pbtxt
	$(BIN)/python -m bench.soak

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

deploy: $(REPOSITORY)/embed_text/config.pbtxt
	docker-compose up -d --build

clean:
	rm -rf $(VENV) $(PEER_VENV) build
