# One command to set up and test: `make test`.  See README.md.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MICROPYTHON := $(BIN)/micropython
PORT ?=# serial port of the board for deploy/flash/repl, e.g. PORT=/dev/ttyUSB0 (no default)
JOBS ?= 2
ARGS ?=
MPY_OPT ?= -O3# mpy-cross optimisation of board code (tools/mpy.py); MPY_OPT= keeps line numbers

LIB_SRC := $(wildcard lib/*.py)
FW_SRC := $(wildcard firmware/*.py)

.PHONY: venv test lint typecheck build check-build mp32 bench sim fleet ingest deploy flash repl clean \
	settings-doc

# Re-runs only when requirements-dev.txt changes (the stamp is newer otherwise).
$(VENV)/.stamp: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.stamp

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/pyright -p pyrightconfig.json --pythonpath tools/pyright_no_env.sh

build: venv
	@rm -rf build && mkdir -p build/lib build/firmware
	@$(BIN)/python -m tools.mpy --march xtensawin --opt="$(MPY_OPT)" -o build/lib $(LIB_SRC)
	@$(BIN)/python -m tools.mpy --march xtensawin --opt="$(MPY_OPT)" -o build/firmware $(FW_SRC)
	@echo "build: $$(ls build/lib build/firmware | grep -c '\.mpy$$') .mpy files in build/"

# A MicroPython unix port with the ESP32's 4-byte pointers, for the 64 KB heap tests, the
# benches' 32-bit figures and `make sim ARGS=--mp32` (the simulator's board side and the
# fakes frozen in): built into .mp32/ from MP_SRC, a MicroPython source tarball or checkout
# (docs/bench.md, "A 32-bit MicroPython"). Once built, `make mp32` brings it up to date without
# MP_SRC: 1-2 s when only the frozen modules changed, nothing when none did.
MP32 := .mp32/micropython
MP_SRC ?=
BUILD_MP32 = tools/build_mp32.sh "$(MP_SRC)" .mp32 $(JOBS)

mp32:
	@$(BUILD_MP32)

# Builds or refreshes .mp32 first when MP_SRC is given or it was built here. Without
# gcc-multilib (exit 3) the 32-bit tests are skipped, their reason saying how to enable them.
test: venv lint typecheck build
	@if [ -n "$(MP_SRC)" ] || [ -f .mp32/build/ORIGIN ]; then $(BUILD_MP32) || [ $$? = 3 ]; fi
	$(BIN)/pytest -n $(JOBS) --dist loadfile -q -rs host_tests

bench: venv
	@for f in bench/bench_*.py; do \
	  if head -5 $$f | grep -q 'run: micropython'; then \
	    echo "== $$f (micropython)"; MICROPYPATH=host_tests/fakes:lib:host_tests:.frozen $(MICROPYTHON) -X heapsize=64M $$f || exit 1; \
	  else echo "== $$f (cpython)"; $(BIN)/python $$f || exit 1; fi; done

# The settings tables of README.md and docs/setup.md, written from lib/config.py (the one
# table of settings); a test fails when they differ from it.
settings-doc: venv
	$(BIN)/python -m tools.settings_doc

# The bundled TimeBase-compatible ingest server, e.g. make ingest ARGS='--port 8099'.
ingest: venv
	$(BIN)/python -m tools.ingest serve $(ARGS)

# The firmware on a simulated board against the bundled ingest server (docs/sim.md),
# e.g. make sim ARGS='--duration 86400 --speed 600 --wifi-outage 600:1200' (--speed max: lockstep).
sim: venv
	$(BIN)/python -m tools.sim $(ARGS)

# The fleet path on this machine (docs/fleet.md): PostgreSQL, a 3-node NATS JetStream cluster
# with its MQTT listener, collectors and simulated boards, e.g.
# make fleet ARGS='--boards 20 --faults'.
fleet: venv
	$(BIN)/python -m tools.fleet $(ARGS)

# Real board (tools/deploy.py; DRY_RUN=1 prints the commands and files, runs nothing):
# make deploy PORT=/dev/ttyUSB0 [CONFIG=config.json] [CA=ca.der] [MQTT_CA=broker-ca.der] [DRY_RUN=1]
# make flash PORT=/dev/ttyUSB0 FIRMWARE=ESP32_GENERIC-....bin [ERASE=1] [DRY_RUN=1] (erases the
# board: asks on a terminal, needs ERASE=1 elsewhere); make repl PORT=...
DEPLOY := $(BIN)/python -m tools.deploy $(if $(filter-out 0 no false,$(DRY_RUN)),--dry-run)
deploy: venv
	@$(DEPLOY) deploy --port "$(PORT)" --config "$(CONFIG)" --ca "$(CA)" --mqtt-ca "$(MQTT_CA)" \
	  --make "$(MAKE)"
flash: venv
	@$(DEPLOY) flash --port "$(PORT)" --firmware "$(FIRMWARE)" \
	  $(if $(filter-out 0 no false,$(ERASE)),--erase-ok)
repl: venv
	@$(DEPLOY) repl --port "$(PORT)"

clean:
	rm -rf build .venv .pytest_cache .mp32 .fleet
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
