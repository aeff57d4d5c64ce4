# make run: install everything (models included), ingest seeds/, serve on http://127.0.0.1:8000
# make test: install everything, lint, run the whole test suite; make test-fast: the unit tier
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
QA := $(VENV)/bin/qa-service
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install models run serve test test-fast lint eval-seed eval-dev eval-rtqa reader bench clean

$(STAMP): pyproject.toml requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first, pinned: the CPU build on this machine's disk (a bare 'torch' pulls a CUDA build)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps -r requirements-models.txt
	$(QA) models prepare
	touch $(STAMP)

install: $(STAMP)

run: install
	$(QA) ingest seeds
	$(QA) serve --host $(HOST) --port $(PORT)

serve: install
	$(QA) serve --host $(HOST) --port $(PORT)

test: install lint
	$(PY) -m pytest -q -rs --durations=15

# the unit tier: no LLM, no server, no browser, nothing slow
test-fast: install
	$(PY) -m pytest -q -m "not llm and not server and not browser and not slow"

lint: install
	$(VENV)/bin/ruff check qa_service tests bench
	$(VENV)/bin/mypy qa_service

eval-seed: install
	$(QA) eval --questions ../shared/eval/seed/questions.jsonl --corpus seeds --out eval/runs/seed

eval-dev: install
	$(QA) eval --questions ../shared/eval/qamr-wikinews/dev.jsonl --corpus ../shared/eval/qamr-wikinews/corpus.jsonl \
		--out eval/runs/dev --baseline eval/baselines/qamr-dev-search.json --search-only

eval-rtqa: install
	$(QA) eval --questions ../shared/eval/realtimeqa-2023/dev.jsonl --corpus ../shared/eval/realtimeqa-2023/corpus.jsonl --out eval/runs/rtqa

# retrain the committed reader (models/reader) from the packaged MiniLM: ~40 min on 2 AVX-512 cores; --resume continues
READER_TRAIN ?= --limit 0 --max-length 128 --max-steps 1000
reader: install
	$(QA) reader train $(READER_TRAIN)
	$(QA) reader export --limit 300

# benchmarks print figures and write bench/results/*.json (not part of make test)
bench: install
	$(PIP) install -q --no-deps langchain-chroma==1.1.0 langchain-huggingface==1.2.3
	$(PY) bench/ask_latency.py --models qwen2.5-coder-1.5b-instruct-q4_k_m qwen2.5-coder-0.5b-instruct-q4_k_m smollm2-135m-instruct-q4_1
	$(PY) bench/encoder.py
	$(PY) bench/rerank.py
	$(PY) bench/time_prior.py
	$(PY) bench/ingest.py
	$(PY) bench/refresh.py
	$(PY) bench/retrieval.py --sizes 10000 100000
	$(PY) bench/retrieval.py --sizes 1000000 --out bench/results/retrieval_1m.json
	$(PY) bench/memory.py
	$(PY) bench/load.py --users 50 --duration 120
	$(PY) bench/naive_chain.py --questions ../shared/eval/realtimeqa-2023/dev.jsonl --corpus ../shared/eval/realtimeqa-2023/corpus.jsonl --limit 100 --out bench/results/naive_chain-rtqa-0-100.json

clean:
	rm -rf $(VENV) vectorstore/chroma.sqlite3 vectorstore/*-* .pytest_cache
