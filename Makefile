# deepbatch: every target bootstraps what it needs (tools/bootstrap.sh is idempotent).
VENV     ?= .venv
PY       := $(VENV)/bin/python
CONF     ?= conf/local.yaml
RUN_DATE ?= $(shell date +%F)
PYTEST_ARGS ?=

.PHONY: setup fuzz run demo-data test test-fast test-unit test-integration test-e2e test-faults test-cluster bench bench-peers lock lock-airflow package clean

setup:
	@bash tools/bootstrap.sh

## Build the demo landing zone from the packaged real data, then run the pipeline.
run: setup
	$(VENV)/bin/deepbatch demo-data --conf $(CONF)
	$(VENV)/bin/deepbatch pipeline --conf $(CONF) --run-date $(RUN_DATE)

demo-data: setup
	$(VENV)/bin/deepbatch demo-data --conf $(CONF)

## The whole suite. pytest exits 5 when it collects nothing: that is a failure here too.
## tools/setup_browser.sh installs Debian's chromium for the run-report browser test.
test: setup
	@bash tools/setup_browser.sh
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

## The edit-test loop: everything but the tests marked slow.
test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-unit: setup
	$(PY) -m pytest -m unit $(PYTEST_ARGS)
test-integration: setup
	$(PY) -m pytest -m integration $(PYTEST_ARGS)
test-cluster: setup
	$(PY) -m pytest -m cluster $(PYTEST_ARGS)

test-faults: setup
	$(PY) -m pytest -m faults $(PYTEST_ARGS)

test-e2e: setup
	@bash tools/setup_browser.sh
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

## Coverage-guided fuzzing (atheris) of every per-record function and check scanner, FUZZ_SECONDS each; the corpus
## grows under tests/fuzz/corpus/, a crash is left under tests/fuzz/crashes/ and fails the target.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?= image_probe video_probe text_normalise jsonl_scan json_scan csv_scan parquet_scan gzip_scan
fuzz: setup
	@$(PY) -c "import atheris" 2>/dev/null || $(PY) -m pip install -q -c requirements/constraints.txt atheris
	@for t in $(FUZZ_TARGETS); do echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  $(PY) -m tests.fuzz.run $$t --seconds $(FUZZ_SECONDS) 2>&1 | grep -E "^(#[0-9]+ +DONE|Done|==[0-9]+== ERROR|stat::)" || exit 1; \
	  test $${PIPESTATUS[0]} -eq 0 || { echo "fuzz $$t found a crash: see tests/fuzz/crashes/"; exit 1; }; done

bench: setup
	$(PY) bench/etl_scaling.py
	$(PY) bench/loader_feed.py
	$(PY) bench/infer_spark.py
	$(PY) bench/infer_runtime.py

## deepbatch against Spark's predict_batch_udf recipe, Ray Data and Daft on the same jobs (peer venvs in .venv-peers/).
bench-peers: setup
	bash bench/peers/setup.sh
	$(PY) bench/peers/cost.py
	$(PY) bench/peers/run.py

## Regenerate the lock from the current venv (after changing requirements/*.in).
lock: setup
	@{ sed -n '1,2p' requirements/constraints.txt; \
	   $(PY) -m pip freeze --exclude-editable | grep -v -i -e '^deepbatch' -e ' @ ' | sed 's/^torch==\(.*\)+cpu/torch==\1/'; \
	   echo "horovod==$$($(PY) -c 'import horovod;print(horovod.__version__)')"; \
	   echo "setuptools==$$($(PY) -c 'import setuptools;print(setuptools.__version__)')"; \
	   echo "wheel==$$($(PY) -c 'import wheel;print(wheel.__version__)')"; } > requirements/constraints.txt.new
	@mv requirements/constraints.txt.new requirements/constraints.txt

## Regenerate the Airflow test environment's lock (after changing requirements/airflow.in).
lock-airflow: setup
	@{ sed -n '1p' requirements/airflow-constraints.txt; \
	   .venv-airflow/bin/python -m pip freeze --exclude-editable | grep -v '^pip=='; } > requirements/airflow-constraints.txt.new
	@mv requirements/airflow-constraints.txt.new requirements/airflow-constraints.txt

## The deepbatch wheel and the executors' Python environment (venv-pack), for spark-submit:
##   --archives dist/deepbatch-env.tar.gz#env --conf spark.pyspark.python=./env/bin/python
package: setup
	rm -f dist/deepbatch-*.whl
	$(PY) -m pip wheel --no-deps --no-build-isolation -q -w dist .
	$(PY) tools/package_env.py --venv $(VENV) --wheel "$$(ls dist/deepbatch-*.whl | head -1)" --out dist/deepbatch-env.tar.gz

clean:
	rm -rf data/ build/ dist/ spark-warehouse/ .pytest_cache
