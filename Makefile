# fanout: the two commands a new user needs, and the developer targets.
#   make demo   run a whole job against a local rate-limited test API
#   make test   build and run every test (installs Debian packages if root)

BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
DEB_BUILD ?= build-deb
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

.PHONY: all deps build test test-unit test-asan test-tsan test-valgrind \
        test-cluster test-compose test-package deb demo bench fuzz static \
        clean format format-check soak

all: build

deps:
	@deploy/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j 2

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -L unit

# ASan + UBSan over the whole suite; timeouts scale for the slower build.
test-asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug \
	    -DFANOUT_SANITIZER=address,undefined \
	    -DFANOUT_TEST_TIMEOUT_MULTIPLIER=3 >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	    ctest --output-on-failure -j 2

# ThreadSanitizer over the code with threads of its own: the unit tests
# and the queue suite (the master's queue thread, source_queue.c). A race
# halts the process; tests/tsan.supp silences only third-party false
# positives, each with its reason.
test-tsan: deps
	@cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug \
	    -DFANOUT_SANITIZER=thread \
	    -DFANOUT_TEST_TIMEOUT_MULTIPLIER=3 >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS)
	cd $(TSAN_BUILD) && \
	    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$(CURDIR)/tests/tsan.supp" \
	    ctest --output-on-failure -R '^(unit\..*|integration\.queues)$$'

demo: build
	@tests/demo.sh $(BUILD)

# Benchmarks: figures as ratios measured side by side; not part of `test`.
bench: build
	@tests/bench/run.sh $(BUILD)

# libFuzzer targets (clang); FUZZ_SECONDS per target (default 60).
fuzz: deps
	@deploy/install-deps.sh clang libclang-rt-14-dev
	@tests/fuzz/run.sh $${FUZZ_SECONDS:-60}

# clang-tidy and cppcheck with the checked-in configuration.
static: deps
	@deploy/install-deps.sh clang-tidy cppcheck
	@tests/static.sh

# The multi-host scenarios alone (they also run inside `make test`).
test-cluster: build
	cd $(BUILD) && ctest --output-on-failure -L cluster

# A docker-compose cluster built from this tree (installs docker.io).
test-compose: build
	@tests/compose/run.sh $(BUILD)

# The Debian package: a build configured for /usr (so the systemd units
# name /usr/bin), without the tests, then CPack. Prints the .deb's path.
deb: deps
	@cmake -S . -B $(DEB_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DCMAKE_INSTALL_PREFIX=/usr -DFANOUT_TESTS=OFF $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(DEB_BUILD) -j $(JOBS)
	@rm -f $(DEB_BUILD)/fanout_*.deb
	@cd $(DEB_BUILD) && cpack -G DEB >cpack.log || { cat cpack.log; exit 1; }
	@ls $(DEB_BUILD)/fanout_*.deb

# That package installed into a clean Debian 12 container (dockerd and a
# base image as for test-compose), and a small job run with it.
test-package: deb
	@tests/package/run.sh $(DEB_BUILD)

# Integration tests with every fanout process under valgrind memcheck.
test-valgrind: build
	@deploy/install-deps.sh valgrind
	@tests/valgrind.sh $(BUILD)

SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

format:
	clang-format -i $(SOURCES)

format-check:
	@clang-format --dry-run --Werror $(SOURCES) && echo "format: clean"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(DEB_BUILD) build-fuzz \
	    build-static demo-out

# The fault soak on the namespace cluster (tests/soak/): SOAK_SECONDS of
# faults (600), SEED to replay a run's faults (random, printed, otherwise).
soak: build
	@python3 tests/soak/soak.py --seconds $${SOAK_SECONDS:-600} \
	    $(if $(SEED),--seed $(SEED))
