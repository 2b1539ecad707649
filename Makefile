# Two commands: `make demo` and `make test`. Both create (or reuse) .venv and install pinned dependencies.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is installed first and pinned, so no other requirement can pull a CUDA build.
$(STAMP): $(PY) requirements.lock pyproject.toml
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/alignflow demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q Testing

clean:
	rm -rf $(VENV) runs
