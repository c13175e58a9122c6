# `make demo` and `make test` each set up first; `make setup` is idempotent (stamps and file times).
PYTHON ?= python3
VENV := .venv
MVN := mvn -q -B
LAUNCHER := daemon/target/replicator-daemon.jar
CLASS_ARCHIVE := daemon/target/replicator-daemon.jsa

.PHONY: setup demo test unit bench lambda clean

setup: $(VENV)/.installed $(LAUNCHER) $(CLASS_ARCHIVE)

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip setuptools wheel
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

$(LAUNCHER): daemon/pom.xml $(shell find daemon/src -type f) replicator/kcl/replicator-logback.xml
	$(MVN) -f daemon/pom.xml package
	touch $@

# The launcher's classes as the JVM maps them ready-made (class data sharing): a start ~1 s sooner.
# Trained by one real run of the daemon on the local server (replicator/local/class_archive.py), ~12 s.
$(CLASS_ARCHIVE): $(LAUNCHER) $(VENV)/.installed
	$(VENV)/bin/python -m replicator.local.class_archive

demo: setup
	$(VENV)/bin/replicator demo

test: setup
	$(VENV)/bin/pytest -q

unit: setup
	$(VENV)/bin/pytest -q -m 'not integration'

$(VENV)/.bench-installed: $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

bench: setup $(VENV)/.bench-installed
	$(VENV)/bin/python -m bench.replication
	$(VENV)/bin/python -m bench.processor
	$(VENV)/bin/python -m bench.copy_table
	$(VENV)/bin/python -m bench.backup
	$(VENV)/bin/python -m bench.kinesis
	$(VENV)/bin/python -m bench.paths
	$(VENV)/bin/python -m bench.startup
	$(VENV)/bin/python -m bench.bootstrap
	$(VENV)/bin/python -m bench.memory

# The Lambda package: our code and what the handler imports at run time (boto3, structlog, tenacity, click,
# orjson), as wheels for Lambda's Python 3.11 on x86_64; none of the daemon's, the tools' or the tests' packages.
LAMBDA_ZIP := dist/replicator-lambda.zip
LAMBDA_DEPS := boto3 structlog tenacity click orjson
LAMBDA_PLATFORM := --platform manylinux2014_x86_64 --implementation cp --python-version 3.11 --only-binary=:all:

lambda: $(LAMBDA_ZIP)

$(LAMBDA_ZIP): $(VENV)/.installed pyproject.toml $(shell find replicator -name '*.py')
	rm -rf build/lambda build/wheel $@
	$(VENV)/bin/pip wheel -q --no-deps --no-build-isolation -w build/wheel .
	$(VENV)/bin/pip install -q --no-deps --no-compile --target build/lambda build/wheel/*.whl
	$(VENV)/bin/pip install -q --no-compile --target build/lambda $(LAMBDA_PLATFORM) $(LAMBDA_DEPS)
	rm -rf build/lambda/bin
	mkdir -p dist
	cd build/lambda && ../../$(VENV)/bin/python -m zipfile -c ../../$@ $$(ls -A)
	@echo "built $@ ($$(du -h $@ | cut -f1)); handler replicator.lambda_handler.handler"

clean:
	rm -rf $(VENV) daemon/target build dist
