/*
 * tests/contract/contract.h - what the backend contract suites share: load
 * the backend named on the command line the way the core does, init it with
 * a mock module whose config comes from the environment, and small helpers.
 *
 *   contract_storage [backend]   e.g. contract_storage storage_sqlite
 *   contract_queue [backend]
 *
 * Environment:
 *   ORDERD_CONTRACT_BACKEND  backend name when argv[1] is absent
 *   ORDERD_CONTRACT_CONFIG   "key=value;key=value" for the backend's group;
 *                            a value of digits is set as an int, true/false as
 *                            a bool, anything else as a string; "%p" in a
 *                            value becomes a token unique to each test (fresh
 *                            file / table prefix per test).
 *   ORDERD_CONTRACT_SKIP     comma-separated capabilities the backend lacks;
 *                            only the checks of those exact capabilities are
 *                            skipped (memory and SQLite set none):
 *       stale_delete       del() with a stale or already used receipt is
 *                          not refused (SQS answers 200 and deletes nothing)
 *       foreign_receipt    del() with another lane's receipt is not refused
 *       malformed_receipt  garbage receipts are not refused (fauxqs only;
 *                          real SQS answers ReceiptHandleIsInvalid)
 *   ORDERD_CONTRACT_MODULE_DIR  where <backend>.so is (default
 *                            $ORDERD_BUILD_DIR/modules).
 */
#ifndef ORDERD_CONTRACT_H
#define ORDERD_CONTRACT_H

#include <check.h>
#include <stdint.h>
#include "mock_host.h"

typedef struct contract_backend {
    const od_module_desc *desc;
    od_module *mod;
    void *self;
    int started;
} contract_backend;

/* Set from argv/env by contract_main, or directly by a backend's own suite. */
const char *contract_backend_name(void);
void contract_set_backend(const char *name);

/* Load, check the kind, configure, init and start the backend (ck_assert on
 * failure). group: "storage" or "queue". */
void contract_open(contract_backend *b, const char *group, uint32_t kind);
/* stop (if not yet) and destroy; safe to call twice. */
void contract_stop(contract_backend *b);
void contract_close(contract_backend *b);

int64_t contract_now_ms(void); /* monotonic */

/* 1 if ORDERD_CONTRACT_SKIP names `capability` (see above). */
int contract_skips(const char *capability);

/* Parse argv, build the suite with make_suite and run it; the exit code. */
int contract_main(int argc, char **argv, Suite *(*make_suite)(void));

#endif
