# Two commands: `make demo` and `make test`. Both create (or reuse) .venv and install pinned dependencies.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install system-deps demo test clean

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

# `alignflow serve`'s browser tests drive Debian's Chromium, and its views render headless through Mesa's EGL.
# Installed here when missing, as root with apt (CI and the project's machines); elsewhere those tests skip, saying why.
SYSTEM_PACKAGES := chromium libegl1 libegl-mesa0 libgl1-mesa-dri
system-deps:
	@command -v dpkg >/dev/null || exit 0; \
	missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	else echo "note: not installed: $$missing (needs root and apt-get); the browser tests will skip"; fi

demo: $(STAMP)
	$(VENV)/bin/alignflow demo --out runs/demo

# Two test processes (one per core of the CI machine), whole files each: a module's shared fixtures are built once.
test: $(STAMP) system-deps
	$(PY) -m pytest -q -n 2 --dist loadfile Testing

clean:
	rm -rf $(VENV) runs
