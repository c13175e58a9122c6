# `make demo` and `make test` each set up first; `make setup` is idempotent (stamps and file times).
PYTHON ?= python3
VENV := .venv
MVN := mvn -q -B
LAUNCHER := daemon/target/replicator-daemon.jar

.PHONY: setup demo test unit bench clean

setup: $(VENV)/.installed $(LAUNCHER)

$(VENV)/.installed: pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip setuptools wheel
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

$(LAUNCHER): daemon/pom.xml $(shell find daemon/src -type f)
	$(MVN) -f daemon/pom.xml package
	touch $@

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
	$(VENV)/bin/python -m bench.copy_table
	$(VENV)/bin/python -m bench.backup

clean:
	rm -rf $(VENV) daemon/target
