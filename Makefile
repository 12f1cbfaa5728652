# orderd - developer entry points. CMake does the real work; this file only
# strings the steps together so a fresh Debian 12 needs two commands:
#   make run     install missing packages, build, start on 127.0.0.1:3000
#   make test    install missing packages, build, run every test suite
#
# Variables: BUILD (build dir), JOBS (parallel jobs), CMAKE_FLAGS (extra
# configure flags), CTEST_TIMEOUT (seconds per test without its own limit),
# DURATION (bench run length, e.g. 10s); bench/run.sh also reads REPEAT,
# BACKENDS, LOG_LEVEL, E2E_ORDERS and more (bench/README.md).

BUILD          ?= build
ASAN_BUILD     ?= build-asan
VALGRIND_BUILD ?= build-valgrind
TSAN_BUILD     ?= build-tsan
JOBS           ?= 2
CMAKE_FLAGS    ?=
CTEST_TIMEOUT  ?= 600
CTEST_ARGS     ?=

DEV_URL   := http://127.0.0.1:3000
DEV_LOGIN := {"email":"admin@example.com","password":"orderd-admin-dev"}

# Sanitizer reports must fail the test, leaks included, and name the line.
SANITIZE_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

.PHONY: all deps build run test test-sanitize test-tsan test-valgrind bench clean help
.PHONY: dev setup status logs reset install deb rpm

all: build

help:
	@echo "make build | run | test | test-sanitize | test-valgrind | bench | clean"
	@echo "make aws-up | aws-provision | aws-down   (DynamoDB + SQS emulators, docs/aws.md)"

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

# ThreadSanitizer on the suites that exercise concurrency: lock-free metrics,
# the backends under many threads (contract, group commit, shared store), the
# auth token and view caches, the worker pool and pipeline, and the HTTP
# concurrency invariants.
TSAN_TESTS := ^(unit_test_metrics|unit_test_host|contract_(storage|queue)_(memory|sqlite)|sqlite_(group_commit|shared_store)|test_auth|test_users|test_products|test_orders|test_queue_worker|test_worker_pipeline|integ_(sqlite_)?concurrency)$$
test-tsan: deps
	cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DORDERD_SANITIZE=thread \
	  -DORDERD_TEST_AWS_EMULATORS=OFF $(CMAKE_FLAGS)
	cmake --build $(TSAN_BUILD) -j$(JOBS)
	cd $(TSAN_BUILD) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -j$(JOBS) --timeout $(CTEST_TIMEOUT) -R '$(TSAN_TESTS)'

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
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) $(VALGRIND_BUILD)

# ---- operator targets (docs/operations.md) --------------------------------
# Variables: ORDERD (binary), CONFIG (its config), STATUS_URL (a running
# orderd), PREFIX / DESTDIR (make install), PKG_OUT (.deb/.rpm output),
# FORCE=1 (make reset without asking).
ORDERD     ?= $(BUILD)/orderd
CONFIG     ?= $(BUILD)/orderd-dev.conf
STATUS_URL ?= $(DEV_URL)
PREFIX     ?= /usr/local
PKG_OUT    ?= build-pkg/out
DEV_LOG    := $(BUILD)/orderd-dev.log
DEV_DB     := $(BUILD)/orderd-dev.db

# `make run`, with a copy of the log in $(DEV_LOG) for `make logs`.
# tee -i outlives Ctrl-C so orderd's shutdown lines are kept too.
dev:
	@mkdir -p $(BUILD)
	@$(MAKE) --no-print-directory run 2>&1 | tee -ai $(DEV_LOG)

# Create or migrate what the configured backends need (SQLite: the database
# file and its schema). Builds first only when it runs the build tree's binary.
# For an installed orderd run it as the orderd user, e.g.
#   sudo -u orderd make setup ORDERD=/usr/bin/orderd CONFIG=/etc/orderd/orderd.conf
setup: $(if $(filter $(BUILD)/orderd,$(ORDERD)),build)
	$(ORDERD) --provision -c $(CONFIG)

status:
	@echo "== $(STATUS_URL)/health"
	@curl -fsS --max-time 5 $(STATUS_URL)/health && echo
	@echo "== queue depths ($(STATUS_URL)/metrics)"
	@curl -fsS --max-time 5 $(STATUS_URL)/metrics | grep -E '^orderd_queue_(dead_letter_)?depth' || \
	  echo "(no queue depth metrics: is queue_worker loaded?)"

# The journal when systemd runs orderd, else the log `make dev` keeps.
logs:
	@if [ -d /run/systemd/system ] && systemctl is-active --quiet orderd 2>/dev/null; then \
	  exec journalctl -u orderd -f; \
	elif [ -f $(DEV_LOG) ]; then \
	  exec tail -n 50 -F $(DEV_LOG); \
	else \
	  echo "logs: orderd.service is not running and $(DEV_LOG) does not exist (start with make dev)" >&2; \
	  exit 1; \
	fi

# Wipe the development database. Stop `make dev` first.
reset:
	@if [ "$(FORCE)" != 1 ]; then \
	  if [ ! -t 0 ]; then \
	    echo "reset: no terminal to confirm on; run make reset FORCE=1 to delete $(DEV_DB)*" >&2; \
	    exit 1; \
	  fi; \
	  printf 'Delete the development database %s* (all users, products and orders)? [y/N] ' $(DEV_DB); \
	  read answer; \
	  case "$$answer" in y|Y|yes) ;; *) echo "reset: nothing deleted"; exit 0;; esac; \
	fi; \
	rm -f $(DEV_DB) $(DEV_DB)-wal $(DEV_DB)-shm $(DEV_DB)-journal; \
	echo "reset: deleted $(DEV_DB)*"

# Configure with the prefix first: orderd compiles its default config and
# modules paths in, so installing elsewhere than configured would break them.
install: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j$(JOBS)
	DESTDIR=$(DESTDIR) cmake --install $(BUILD)

deb:
	@bash .ci/install-deps debhelper fakeroot dpkg-dev
	JOBS=$(JOBS) bash packaging/build-deb $(PKG_OUT)

rpm: deps
	@bash .ci/install-deps rpm
	JOBS=$(JOBS) bash packaging/build-rpm $(PKG_OUT)

# ---- DynamoDB + SQS on local emulators (docs/aws.md) -----------------------
#   make aws-up          start DynamoDB Local + fauxqs on 127.0.0.1 (downloads
#                        cached in $(BUILD)/aws-emu; needs java 17, node, npm)
#   make aws-provision   create the tables and queues $(AWS_CONFIG) names in them
#   make aws-down        stop exactly the emulators aws-up started
# The pid files are those of `ctest -L aws` in the same build tree on the same
# ports, so either reuses emulators the other started. Run orderd against
# them with the environment `tests/aws/aws-emulators.sh env` prints.
AWS_CONFIG   ?= conf/orderd-aws.conf
AWS_DDB_PORT ?= 8000
AWS_SQS_PORT ?= 9324
AWS_EMU_DIR  := $(abspath $(BUILD))/aws-emu
AWS_EMU      := AWS_EMU_CACHE=$(AWS_EMU_DIR) AWS_EMU_RUN=$(AWS_EMU_DIR)/run \
                AWS_EMU_DDB_PORT=$(AWS_DDB_PORT) AWS_EMU_SQS_PORT=$(AWS_SQS_PORT) \
                AWS_REGION=us-east-1 bash tests/aws/aws-emulators.sh
# The emulators check no signature: any key pair will do.
AWS_LOCAL_ENV := AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_REGION=us-east-1 \
                 AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$(AWS_DDB_PORT) \
                 AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$(AWS_SQS_PORT)

.PHONY: aws-up aws-down aws-provision

aws-up:
	@mkdir -p $(AWS_EMU_DIR)
	$(AWS_EMU) start

aws-down:
	$(AWS_EMU) stop

# The example config with the build tree's modules directory. Provisioning
# inits every module (auth needs a secret) but issues no token: a random
# throw-away JWT_SECRET is enough.
aws-provision: $(if $(filter $(BUILD)/orderd,$(ORDERD)),build)
	@mkdir -p $(BUILD)
	sed -e 's|^  # directory = .*|  directory = "$(abspath $(BUILD))/modules";|' \
	  $(AWS_CONFIG) > $(BUILD)/orderd-aws-local.conf
	$(AWS_LOCAL_ENV) JWT_SECRET=$$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n') \
	  $(ORDERD) --provision -c $(BUILD)/orderd-aws-local.conf
