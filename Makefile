# flowcast: `make run` sets up and starts the server; `make test` sets up and runs every test.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
ARGS ?=
FUZZ_SECONDS ?= 60
FUZZ_TARGETS ?=
CI_FUZZ_SECONDS ?= 10

.PHONY: all deps build asan run test test-unit test-e2e test-asan node bench fuzz soak valgrind clean install uninstall deb

# `make install` (and uninstall, deb): PREFIX and DESTDIR as usual. INSTALL_BIN
# installs that binary instead of building $(BUILD)/flowcast.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
DOCDIR ?= $(DATADIR)/doc/flowcast
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
SYSTEMDUNITDIR ?= $(if $(filter /usr,$(PREFIX)),/lib/systemd/system,$(PREFIX)/lib/systemd/system)
INSTALL_BIN ?=
DEB_DIR ?= $(BUILD)/deb
VERSION := $(shell grep -om1 'flowcast VERSION [0-9.]*' CMakeLists.txt | cut -d' ' -f3)

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
	@echo "== module includes and format"
	@scripts/check-includes.sh
	@scripts/check-format.sh
	@echo "== unit tests (release)"
	@cd $(BUILD) && ctest --output-on-failure
	@echo "== unit tests (asan+ubsan)"
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure
	@echo "== end-to-end tests (release)"
	@FLOWCAST_BIN=$(CURDIR)/$(BUILD)/flowcast timeout 1800 node --test --test-concurrency=1 tests/e2e/
	@echo "== end-to-end tests (asan+ubsan)"
	@FLOWCAST_BIN=$(CURDIR)/$(ASAN_BUILD)/flowcast FLOWCAST_SANITIZED=1 timeout 1800 node --test --test-concurrency=1 tests/e2e/
	@echo "== fuzz targets, $(CI_FUZZ_SECONDS) s each"
	@FUZZ_SECONDS=$(CI_FUZZ_SECONDS) scripts/fuzz.sh

test-unit: build
	@cd $(BUILD) && ctest --output-on-failure

test-e2e: build node
	@FLOWCAST_BIN=$(CURDIR)/$(BUILD)/flowcast timeout 1800 node --test --test-concurrency=1 tests/e2e/

# libFuzzer targets (clang): FUZZ_SECONDS each (default 60); `make fuzz FUZZ_TARGETS="jwt cron"` picks some.
fuzz: deps
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh $(FUZZ_TARGETS)

bench: build
	@bench/run.sh

# Memory soak (2 min, 2,000 subscribers, 10% stalled) on the ASan build: RSS per second, drops, LeakSanitizer.
soak: asan build
	@bench/soak/run.sh $(ASAN_BUILD)/flowcast $(ASAN_BUILD)/soak

# Every unit test under valgrind memcheck, no leak allowed.
valgrind: build
	@scripts/valgrind-units.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)

# The binary, flowcast.1, the systemd unit, the example config (also as the
# config when none is there yet) and the example workflows.
install: $(if $(INSTALL_BIN),,build)
	@set -e; d='$(DESTDIR)'; \
	install -d "$$d$(BINDIR)" "$$d$(MANDIR)/man1" "$$d$(SYSTEMDUNITDIR)" "$$d$(DOCDIR)" \
	  "$$d$(SYSCONFDIR)/flowcast/workflows" "$$d$(DATADIR)/flowcast/workflows/scripts"; \
	install -m 755 '$(or $(INSTALL_BIN),$(BUILD)/flowcast)' "$$d$(BINDIR)/flowcast"; \
	install -m 644 packaging/flowcast.1 "$$d$(MANDIR)/man1/flowcast.1"; \
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' packaging/flowcast.service.in \
	  > "$$d$(SYSTEMDUNITDIR)/flowcast.service"; chmod 644 "$$d$(SYSTEMDUNITDIR)/flowcast.service"; \
	install -m 644 packaging/flowcast.conf "$$d$(DOCDIR)/flowcast.conf.example"; \
	install -m 644 README.md docs/cli.md "$$d$(DOCDIR)/"; \
	if [ ! -e "$$d$(SYSCONFDIR)/flowcast/flowcast.conf" ]; then \
	  install -m 644 packaging/flowcast.conf "$$d$(SYSCONFDIR)/flowcast/flowcast.conf"; fi; \
	install -m 644 workflows/*.json "$$d$(DATADIR)/flowcast/workflows/"; \
	install -m 755 workflows/scripts/* "$$d$(DATADIR)/flowcast/workflows/scripts/"; \
	echo "installed flowcast into $$d$(PREFIX) (config: $$d$(SYSCONFDIR)/flowcast/flowcast.conf)"

# Removes what install put in place, but the config (it may hold changes).
uninstall:
	rm -f '$(DESTDIR)$(BINDIR)/flowcast' '$(DESTDIR)$(MANDIR)/man1/flowcast.1' \
	  '$(DESTDIR)$(SYSTEMDUNITDIR)/flowcast.service'
	rm -rf '$(DESTDIR)$(DOCDIR)' '$(DESTDIR)$(DATADIR)/flowcast'

# A Debian package (dpkg-deb) of the same files, in $(DEB_DIR).
deb: $(if $(INSTALL_BIN),,build)
	@rm -rf '$(DEB_DIR)/root'
	@$(MAKE) --no-print-directory install DESTDIR='$(DEB_DIR)/root' PREFIX=/usr \
	  INSTALL_BIN='$(or $(INSTALL_BIN),$(BUILD)/flowcast)' >/dev/null
	@packaging/mkdeb.sh '$(DEB_DIR)/root' '$(VERSION)' '$(DEB_DIR)'

# `make format` applies .clang-format to every C file.
.PHONY: format
format:
	@clang-format -i src/*.c src/*/*.[ch] tests/unit/*.[ch] tests/fuzz/*.[ch]
