# flowcast: `make run` sets up and starts the server; `make test` sets up and runs every test.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
ARGS ?=
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
CI_FUZZ_SECONDS ?= 10

.PHONY: all deps build asan run test test-unit test-e2e test-asan node bench fuzz clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DFC_SANITIZE=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

node_modules/.package-lock.json: package.json package-lock.json
	@npm ci --no-audit --no-fund --loglevel=error
node: deps node_modules/.package-lock.json

run: build
	./$(BUILD)/flowcast serve $(ARGS)

# Every test twice: the release build, then the ASan+UBSan build; then a short
# run of each fuzz target (FUZZ_SECONDS each, 10 here; `make fuzz` runs longer).
test: build asan node
	@echo "== unit tests (release)"
	@cd $(BUILD) && ctest --output-on-failure
	@echo "== unit tests (asan+ubsan)"
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure
	@echo "== end-to-end tests (release)"
	@FLOWCAST_BIN=$(CURDIR)/$(BUILD)/flowcast node --test --test-concurrency=1 tests/e2e/
	@echo "== end-to-end tests (asan+ubsan)"
	@FLOWCAST_BIN=$(CURDIR)/$(ASAN_BUILD)/flowcast FLOWCAST_SANITIZED=1 node --test --test-concurrency=1 tests/e2e/
	@echo "== fuzz targets, $(CI_FUZZ_SECONDS) s each"
	@FUZZ_SECONDS=$(CI_FUZZ_SECONDS) scripts/fuzz.sh

test-unit: build
	@cd $(BUILD) && ctest --output-on-failure

test-e2e: build node
	@FLOWCAST_BIN=$(CURDIR)/$(BUILD)/flowcast node --test --test-concurrency=1 tests/e2e/

# libFuzzer targets (clang): FUZZ_SECONDS each (default 60); `make fuzz FUZZ_TARGETS="jwt cron"` picks some.
fuzz: deps
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh $(FUZZ_TARGETS)

bench: build
	@bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
