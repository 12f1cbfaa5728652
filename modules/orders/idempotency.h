/*
 * idempotency.h - Idempotency-Key records of the orders service: find,
 * expire, claim, end and forget them, and the janitor thread that deletes
 * expired ones (idempotency.c).
 *
 * Not part of the ABI: compiled into orders.so only, like order_model.h
 * keeps the order document. The record and expiry-doc formats are
 * docs/data-model.md's; why ending a record needs its expiry doc is the
 * comment at the top of idempotency.c. Everything but the janitor's
 * start/stop and the init/destroy calls is re-entrant: handlers on many
 * HTTP workers call it at once on one read-only odi.
 */
#ifndef ODI_IDEMPOTENCY_H
#define ODI_IDEMPOTENCY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "orderd/orderd.h"

#define ODI_KEY_MAX 128 /* Idempotency-Key header: visible ASCII */
#define ODI_HASH_LEN 64 /* a record's requestHash: SHA-256 in hex */
/* A record this old without its order belongs to a request that died
 * between the two writes: the retry creates the order under its id. An
 * expired record whose end began this long ago and is not done belongs to
 * an ender that died: its end may be taken over. */
#define ODI_STALE_MS 60000
/* "<customer>:<Idempotency-Key>", and "<createdAt ms, 13+ digits>:" + that */
#define ODI_RECORD_KEY_MAX (OD_ID_MAX + ODI_KEY_MAX + 2)
#define ODI_EXPIRY_KEY_MAX (21 + ODI_RECORD_KEY_MAX)
#define ODI_EXPIRY_BODY_MAX (OD_ID_MAX + 96)

/* The records' side of the module state. Set by odi_config(); read-only
 * afterwards except the janitor's: janitor_started is only touched by
 * odi_janitor_start()/stop() on the main thread; stop sets janitor_stop
 * under janitor_lock and signals janitor_wake, so a janitor waiting for its
 * next sweep cannot miss the wake-up, and one sweeping checks the flag
 * between documents. */
typedef struct odi {
    const od_host_api *host;
    od_module *mod;
    const od_storage *storage;
    int64_t ttl_ms;
    uint32_t sweep_interval_ms; /* 0: no janitor */
    od_metric *expired;

    pthread_t janitor;
    int janitor_started;
    atomic_int janitor_stop;
    pthread_mutex_t janitor_lock;
    pthread_cond_t janitor_wake;
} odi;

/* What an Idempotency-Key record says, and the version read. */
typedef struct odi_record {
    char order_id[OD_ID_MAX];
    char hash[ODI_HASH_LEN + 1];
    int64_t created_ms;
    uint64_t version;
} odi_record;

/* What a new order claims under its Idempotency-Key: the record and its
 * expiry doc, both written with the order. The caller sets key and hash
 * (borrowed); odi_claim_fill() the rest. */
typedef struct odi_claim {
    const char *key;  /* "<customer>:<Idempotency-Key>" */
    const char *hash; /* of the canonical request */
    char body[256];   /* the record */
    size_t len;
    char expiry_key[ODI_EXPIRY_KEY_MAX];
    char expiry_body[ODI_EXPIRY_BODY_MAX];
    size_t expiry_len;
} odi_claim;

/* ---- init and destroy (main thread, in the module's init order) ---- */

/* Keep the backends (borrowed for the module's life) and read
 * `idempotency_ttl_hours` and `idempotency_sweep_interval_ms`. */
od_status odi_config(odi *i, const od_host_api *host, od_module *mod, const od_storage *storage);
/* Register orderd_idempotency_expired_total; OD_ERR_NOMEM if it failed. */
od_status odi_metrics(odi *i);
/* The janitor's lock and wake-up; odi_destroy() releases them. */
od_status odi_sync_init(odi *i);
/* Stop the janitor if it runs, then release what odi_sync_init() made. */
void odi_destroy(odi *i);

/* ---- the janitor (main thread; start() blocks every signal in it) ---- */

/* Start the thread unless the interval is 0; logs either way. */
od_status odi_janitor_start(odi *i);
/* Wake the janitor whether it waits or sweeps, and join it. */
void odi_janitor_stop(odi *i);

/* ---- records (any thread) ---- */

/* Read the record under key ("<customer>:<Idempotency-Key>"): OD_OK with
 * *rec; OD_ERR_NOT_FOUND; OD_ERR_INTERNAL for a record that cannot be
 * read; else the storage's status. */
od_status odi_find(const odi *i, const char *key, odi_record *rec);
/* 1 once the record no longer counts (idempotency_ttl_hours). */
int odi_expired(const odi *i, const odi_record *rec);
/* End the expired generation rec of record_key: OD_OK once its record is
 * gone (deleted here, *deleted = 1, or earlier by someone else);
 * OD_ERR_CONFLICT while another request or janitor is ending it; else the
 * storage's status. */
od_status odi_end(const odi *i, const char *record_key, const odi_record *rec, int *deleted);

/* Fill the claim's record and expiry doc for order_id, created now. */
void odi_claim_fill(const odi *i, odi_claim *claim, const char *order_id);
/* Without put_batch: write the claim, expiry doc then record, each
 * IF_ABSENT; OD_ERR_EXISTS when the key is taken. A failed record put
 * removes the doc again. */
od_status odi_claim_put(const odi *i, const odi_claim *claim);
/* With put_batch: the claim's two IF_ABSENT puts, record then expiry doc
 * (both borrow from claim). */
void odi_claim_puts(const odi_claim *claim, od_put *record, od_put *expiry);
/* Undo a claim this request wrote; claim may be NULL. */
void odi_forget(const odi *i, const odi_claim *claim);

#endif /* ODI_IDEMPOTENCY_H */
