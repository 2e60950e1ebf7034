# Two entry points for a fresh machine: `make demo` and `make test`.
# Each creates .venv when missing and installs torch==2.13.0 (the local CPU build) before the package,
# so pip never pulls a CUDA torch.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.kexue-installed

.PHONY: demo similarity test test-slow bench install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

# the articles' experiments in their quick form: prints the table and where the HTML report is
demo: $(STAMP)
	$(VENV)/bin/kexue reproduce --quick

similarity: $(STAMP)
	$(VENV)/bin/kexue similarity

test: $(STAMP)
	$(PY) -m pytest -q -x --durations=15

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done
