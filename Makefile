# flowcast: `make run` sets up and starts the server; `make test` sets up and runs every test.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
ARGS ?=

.PHONY: all deps build asan run test test-unit test-e2e test-asan node bench clean

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

# Every test twice: the release build, then the ASan+UBSan build.
test: build asan node
	@echo "== unit tests (release)"
	@cd $(BUILD) && ctest --output-on-failure
	@echo "== unit tests (asan+ubsan)"
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure
	@echo "== end-to-end tests (release)"
	@FLOWCAST_BIN=$(CURDIR)/$(BUILD)/flowcast node --test --test-concurrency=1 tests/e2e/
	@echo "== end-to-end tests (asan+ubsan)"
	@FLOWCAST_BIN=$(CURDIR)/$(ASAN_BUILD)/flowcast FLOWCAST_SANITIZED=1 node --test --test-concurrency=1 tests/e2e/

test-unit: build
	@cd $(BUILD) && ctest --output-on-failure

test-e2e: build node
	@FLOWCAST_BIN=$(CURDIR)/$(BUILD)/flowcast node --test --test-concurrency=1 tests/e2e/

bench: build
	@bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
