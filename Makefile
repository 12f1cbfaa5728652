# orderd - developer entry points. CMake does the real work; this file only
# strings the steps together so a fresh Debian 12 needs two commands:
#   make run     install missing packages, build, start on 127.0.0.1:3000
#   make test    install missing packages, build, run every test suite
#
# Variables: BUILD (build dir), JOBS (parallel jobs), CMAKE_FLAGS (extra
# configure flags), CTEST_TIMEOUT (seconds per test without its own limit),
# DURATION (bench run length, e.g. 10s).

BUILD          ?= build
ASAN_BUILD     ?= build-asan
VALGRIND_BUILD ?= build-valgrind
JOBS           ?= 2
CMAKE_FLAGS    ?=
CTEST_TIMEOUT  ?= 600
CTEST_ARGS     ?=

DEV_URL   := http://127.0.0.1:3000
DEV_LOGIN := {"email":"admin@example.com","password":"orderd-admin-dev"}

# Sanitizer reports must fail the test, leaks included, and name the line.
SANITIZE_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

.PHONY: all deps build run test test-sanitize test-valgrind bench clean help

all: build

help:
	@echo "make build | run | test | test-sanitize | test-valgrind | bench | clean"

deps:
	@bash .ci/install-deps

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j$(JOBS)

run: build
	@echo
	@echo "orderd (dev config: $(BUILD)/orderd-dev.conf) on $(DEV_URL) - Ctrl-C stops it."
	@echo "Log in as the dev admin from another shell:"
	@echo '  curl -s -X POST $(DEV_URL)/api/login -H '\''Content-Type: application/json'\'' -d '\''$(DEV_LOGIN)'\'''
	@echo "then call e.g.  curl -s $(DEV_URL)/api/users/me -H \"Authorization: Bearer <accessToken>\""
	@echo
	exec $(BUILD)/orderd -c $(BUILD)/orderd-dev.conf

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) --timeout $(CTEST_TIMEOUT) $(CTEST_ARGS)

test-sanitize: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DORDERD_SANITIZE=address,undefined $(CMAKE_FLAGS)
	cmake --build $(ASAN_BUILD) -j$(JOBS)
	cd $(ASAN_BUILD) && $(SANITIZE_ENV) ctest --output-on-failure -j$(JOBS) --timeout $(CTEST_TIMEOUT) $(CTEST_ARGS)

# Optional and slow: unit suites under memcheck in one process (CK_FORK=no),
# and the server of the integration suites under valgrind.
VALGRIND := valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --quiet
test-valgrind:
	@bash .ci/install-deps valgrind
	cmake -S . -B $(VALGRIND_BUILD) -DCMAKE_BUILD_TYPE=Debug $(CMAKE_FLAGS) \
	  "-DMEMORYCHECK_COMMAND_OPTIONS=--error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
	cmake --build $(VALGRIND_BUILD) -j$(JOBS)
	cd $(VALGRIND_BUILD) && CK_FORK=no ctest -T memcheck -E '^integ_' --output-on-failure -j$(JOBS) --timeout $(CTEST_TIMEOUT)
	cd $(VALGRIND_BUILD) && ORDERD_TEST_WRAPPER="$(VALGRIND)" ORDERD_TEST_START_MS=60000 \
	  ctest -R '^integ_' --output-on-failure -j1 --timeout 1800

bench: build
	@bash .ci/install-deps wrk
	BUILD=$(BUILD) bash bench/run.sh

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(VALGRIND_BUILD)
