/*
 * idempotency.c - Idempotency-Key records of the orders service
 * (idempotency.h). A record ("<customer>:<key>" in table idempotency) names
 * the order one keyed POST created and the hash of its request; it counts
 * for `idempotency_ttl_hours` (1..8760, default 24), after which a request
 * reusing the key ends it and claims the key afresh. A janitor thread
 * deletes expired records in creation order every
 * `idempotency_sweep_interval_ms` (0..86400000, default 60000, 0: no
 * janitor), counting them in orderd_idempotency_expired_total. Config group
 * "orders". Threads: the record functions run on the HTTP workers; the
 * janitor is one thread, started by odi_janitor_start() and joined by
 * odi_janitor_stop() (the module's start() and stop()).
 *
 * ---- expiry of idempotency records ----
 *
 * Each record (a "generation" of its key: what one claim wrote) has a doc
 * in idempotency_expiry keyed "<createdAt ms, 13 digits>:<record key>",
 * written with it, so a scan in key order meets the oldest first and a
 * sweep reads what expired plus one page, never the whole table.
 *
 * The doc is also the generation's token. Record versions cannot tell two
 * generations apart: every record is created at version 1, so "delete the
 * expired record with the version read" could delete the NEXT generation,
 * created by a concurrent request in between (ABA), and make one key two
 * orders. The doc's key names one generation and is never written again
 * once it ends (createdAt only grows), so a conditional write on it has no
 * ABA: whoever ends a generation, a request reusing the key or a janitor,
 * first marks its doc ended (IF_VERSION on the doc read, IF_ABSENT for a
 * record from before expiry docs); of concurrent enders one wins, and only
 * the winner deletes the record, after re-reading that it still is that
 * generation (same orderId and createdAt). Nobody else deletes or replaces
 * that record meanwhile: other enders lost, a new claim needs the key
 * free, and an undo only removes what its own request just wrote. An
 * ender that died leaves the doc ended and the record in place: after
 * ODI_STALE_MS its end may be taken over (IF_VERSION again).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "idempotency.h"
#include "odm.h"
#include "order_model.h"

#define IDEM_TTL_HOURS_DEFAULT 24
#define IDEM_TTL_HOURS_MAX 8760
#define IDEM_SWEEP_INTERVAL_DEFAULT 60000
#define IDEM_SWEEP_INTERVAL_MAX 86400000
#define IDEM_SWEEP_PAGE 100 /* expiry docs per storage scan of a sweep */

typedef struct idem_expiry {
    char order_id[OD_ID_MAX]; /* "" when the doc is unreadable */
    int64_t ended_ms;         /* 0 while the generation lives */
    uint64_t version;
} idem_expiry;

od_status odi_find(const odi *i, const char *key, odi_record *rec)
{
    od_doc d = {0};
    od_status s = i->storage->ops->get(i->storage->self, ODO_TABLE_IDEMPOTENCY, key, &d);
    if (s != OD_OK)
        return s;
    json_object *r = json_tokener_parse(d.body);
    uint64_t version = d.version;
    od_doc_clear(i->host, &d);
    const char *order_id = r ? odo_str(r, "orderId") : "";
    const char *hash = r ? odo_str(r, "requestHash") : "";
    s = OD_ERR_INTERNAL;
    if (strlen(order_id) < sizeof rec->order_id && strlen(hash) == ODI_HASH_LEN) {
        snprintf(rec->order_id, sizeof rec->order_id, "%s", order_id);
        snprintf(rec->hash, sizeof rec->hash, "%s", hash);
        int64_t created = odm_iso8601_parse(odo_str(r, "createdAt"));
        rec->created_ms = created < 0 ? 0 : created; /* unreadable: expired long ago */
        rec->version = version;
        s = OD_OK;
    }
    json_object_put(r);
    return s;
}

/* A record counts for idempotency_ttl_hours; one whose createdAt cannot be
 * read counts as expired. */
int odi_expired(const odi *i, const odi_record *rec)
{
    return i->host->now_ms() - rec->created_ms >= i->ttl_ms;
}

/* ---- expiry docs ---- */

static void expiry_key(char *out, int64_t created_ms, const char *record_key)
{
    snprintf(out, ODI_EXPIRY_KEY_MAX, "%013" PRId64 ":%s", created_ms, record_key);
}

static size_t expiry_body(char *out, const char *order_id, int64_t created_ms, int64_t ended_ms)
{
    int n = snprintf(out, ODI_EXPIRY_BODY_MAX, "{\"orderId\":\"%s\",\"createdAtMs\":%" PRId64,
                     order_id, created_ms);
    if (ended_ms != 0)
        n += snprintf(out + n, ODI_EXPIRY_BODY_MAX - (size_t)n, ",\"endedAtMs\":%" PRId64,
                      ended_ms);
    n += snprintf(out + n, ODI_EXPIRY_BODY_MAX - (size_t)n, "}");
    return (size_t)n;
}

static void expiry_parse(const od_doc *d, idem_expiry *e)
{
    json_object *j = json_tokener_parse(d->body), *v = NULL;
    const char *order_id = j ? odo_str(j, "orderId") : "";
    *e = (idem_expiry){.version = d->version};
    if (strlen(order_id) < sizeof e->order_id)
        snprintf(e->order_id, sizeof e->order_id, "%s", order_id);
    if (j && json_object_object_get_ex(j, "endedAtMs", &v))
        e->ended_ms = json_object_get_int64(v);
    json_object_put(j);
}

static int same_generation(const odi_record *rec, const char *order_id, int64_t created_ms)
{
    return rec->created_ms == created_ms && strcmp(rec->order_id, order_id) == 0;
}

static void forget(const odi *i, const char *table, const char *key, uint64_t expected)
{
    od_status s = i->storage->ops->del(i->storage->self, table, key, expected);
    if (s != OD_OK && s != OD_ERR_NOT_FOUND && s != OD_ERR_CONFLICT)
        i->host->log(i->mod, OD_LOG_ERROR, "cannot remove %s document: %s", table,
                     od_status_str(s));
}

/* Take the end of generation rec of record_key (the caller saw it
 * expire); see above. */
static od_status expiry_take(const odi *i, const char *ekey, const odi_record *rec, int64_t now,
                             uint64_t *version)
{
    const od_storage *st = i->storage;
    char body[ODI_EXPIRY_BODY_MAX];
    od_doc d = {0};
    idem_expiry e = {.version = 0};
    uint32_t cond = OD_PUT_IF_ABSENT;
    od_status s = st->ops->get(st->self, ODO_TABLE_IDEM_EXPIRY, ekey, &d);
    if (s == OD_OK) {
        expiry_parse(&d, &e);
        od_doc_clear(i->host, &d);
        if (e.ended_ms != 0 && now - e.ended_ms < ODI_STALE_MS)
            return OD_ERR_CONFLICT; /* being ended right now */
        cond = OD_PUT_IF_VERSION;
    } else if (s != OD_ERR_NOT_FOUND) {
        return s;
    }
    size_t len = expiry_body(body, rec->order_id, rec->created_ms, now);
    s = st->ops->put(st->self, ODO_TABLE_IDEM_EXPIRY, ekey, body, len, NULL, 0, cond, e.version,
                     version);
    return s == OD_ERR_EXISTS || s == OD_ERR_NOT_FOUND ? OD_ERR_CONFLICT : s;
}

od_status odi_end(const odi *i, const char *record_key, const odi_record *rec, int *deleted)
{
    const od_storage *st = i->storage;
    char ekey[ODI_EXPIRY_KEY_MAX];
    uint64_t version = 0;
    odi_record cur;
    expiry_key(ekey, rec->created_ms, record_key);
    od_status s = expiry_take(i, ekey, rec, i->host->now_ms(), &version);
    if (s != OD_OK)
        return s;
    s = odi_find(i, record_key, &cur);
    if (s == OD_OK && same_generation(&cur, rec->order_id, rec->created_ms)) {
        s = st->ops->del(st->self, ODO_TABLE_IDEMPOTENCY, record_key, cur.version);
        if (s == OD_OK) {
            *deleted = 1;
            i->host->metric_add(i->expired, 1);
        }
    } else if (s == OD_ERR_INTERNAL) {
        s = OD_OK; /* another generation, unreadable: not ours to judge */
    }
    if (s != OD_OK && s != OD_ERR_NOT_FOUND)
        return s; /* the doc stays ended: retried after ODI_STALE_MS */
    forget(i, ODO_TABLE_IDEM_EXPIRY, ekey, version);
    return OD_OK;
}

/* ---- claims ---- */

void odi_claim_fill(const odi *i, odi_claim *claim, const char *order_id)
{
    char at[ODM_TIME_LEN + 1];
    int64_t now = i->host->now_ms();
    odm_iso8601(now, at);
    int n = snprintf(claim->body, sizeof claim->body,
                     "{\"orderId\":\"%s\",\"requestHash\":\"%s\",\"createdAt\":\"%s\"}", order_id,
                     claim->hash, at);
    claim->len = (size_t)n;
    expiry_key(claim->expiry_key, now, claim->key);
    claim->expiry_len = expiry_body(claim->expiry_body, order_id, now, 0);
}

/* The doc goes first: a crash between the two leaves a doc the janitor
 * deletes, never a record no sweep can find. */
od_status odi_claim_put(const odi *i, const odi_claim *claim)
{
    const od_storage *st = i->storage;
    od_status s = st->ops->put(st->self, ODO_TABLE_IDEM_EXPIRY, claim->expiry_key,
                               claim->expiry_body, claim->expiry_len, NULL, 0, OD_PUT_IF_ABSENT, 0,
                               NULL);
    if (s != OD_OK)
        return s;
    s = st->ops->put(st->self, ODO_TABLE_IDEMPOTENCY, claim->key, claim->body, claim->len, NULL, 0,
                     OD_PUT_IF_ABSENT, 0, NULL);
    if (s != OD_OK)
        forget(i, ODO_TABLE_IDEM_EXPIRY, claim->expiry_key, 0);
    return s;
}

void odi_claim_puts(const odi_claim *claim, od_put *record, od_put *expiry)
{
    *record = (od_put){.size = sizeof(od_put), .cond = OD_PUT_IF_ABSENT,
                       .table = ODO_TABLE_IDEMPOTENCY, .key = claim->key, .body = claim->body,
                       .len = claim->len};
    *expiry = (od_put){.size = sizeof(od_put), .cond = OD_PUT_IF_ABSENT,
                       .table = ODO_TABLE_IDEM_EXPIRY, .key = claim->expiry_key,
                       .body = claim->expiry_body, .len = claim->expiry_len};
}

/* No one else can have ended a claim this request just wrote. */
void odi_forget(const odi *i, const odi_claim *claim)
{
    if (claim == NULL)
        return;
    forget(i, ODO_TABLE_IDEMPOTENCY, claim->key, 0);
    forget(i, ODO_TABLE_IDEM_EXPIRY, claim->expiry_key, 0);
}

/* ---- the janitor ---- */

static int janitor_stopping(const odi *i)
{
    return atomic_load(&i->janitor_stop) || i->host->stopping();
}

/* One expiry doc of a sweep; sets *done at the first one not yet expired. */
static od_status sweep_doc(const odi *i, const od_doc *d, int64_t cutoff, int *done,
                           size_t *deleted)
{
    const od_storage *st = i->storage;
    char *end = NULL;
    idem_expiry e;
    odi_record rec;
    errno = 0;
    long long created = strtoll(d->key, &end, 10);
    if (errno != 0 || end == d->key || *end != ':' || end[1] == '\0') {
        i->host->log(i->mod, OD_LOG_WARN, "%s: malformed key \"%s\" deleted",
                     ODO_TABLE_IDEM_EXPIRY, d->key);
        forget(i, ODO_TABLE_IDEM_EXPIRY, d->key, d->version);
        return OD_OK;
    }
    if (created > cutoff) {
        *done = 1;
        return OD_OK;
    }
    const char *record_key = end + 1;
    expiry_parse(d, &e);
    od_status s = odi_find(i, record_key, &rec);
    if (s == OD_OK && same_generation(&rec, e.order_id, created)) {
        int gone = 0;
        s = odi_end(i, record_key, &rec, &gone);
        *deleted += (size_t)gone;
        return s == OD_ERR_CONFLICT ? OD_OK : s;
    }
    if (s != OD_OK && s != OD_ERR_NOT_FOUND && s != OD_ERR_INTERNAL)
        return s;
    /* Its generation is gone (ended, undone or replaced): only the doc is
     * left. A conflict means someone is ending it: their business. */
    s = st->ops->del(st->self, ODO_TABLE_IDEM_EXPIRY, d->key, d->version);
    return s == OD_ERR_NOT_FOUND || s == OD_ERR_CONFLICT ? OD_OK : s;
}

/* Oldest first, up to the first doc not yet expired: the pages read are
 * what expired plus one. Several orderd instances may sweep at once: each
 * delete is conditional, and what another did is skipped. */
static void sweep(const odi *i)
{
    const od_storage *st = i->storage;
    int64_t cutoff = i->host->now_ms() - i->ttl_ms;
    char *cursor = NULL;
    size_t deleted = 0;
    int done = 0;
    od_status s;
    do {
        od_page page = {0};
        s = st->ops->scan(st->self, ODO_TABLE_IDEM_EXPIRY, cursor, IDEM_SWEEP_PAGE, 0, &page);
        i->host->free(cursor);
        cursor = NULL;
        for (size_t k = 0; s == OD_OK && !done && k < page.count && !janitor_stopping(i); k++)
            s = sweep_doc(i, &page.items[k], cutoff, &done, &deleted);
        if (s == OD_OK && !done && page.next != NULL)
            cursor = i->host->strdup(page.next);
        od_page_clear(i->host, &page);
    } while (cursor != NULL && !janitor_stopping(i));
    i->host->free(cursor);
    if (s != OD_OK)
        i->host->log(i->mod, OD_LOG_WARN, "idempotency sweep stopped: %s; next in %" PRIu32 " ms",
                     od_status_str(s), i->sweep_interval_ms);
    if (deleted > 0)
        i->host->log(i->mod, OD_LOG_INFO,
                     "idempotency sweep: %zu expired Idempotency-Key records deleted", deleted);
}

/* Wait one interval; 0 once stop is requested. */
static int janitor_wait(odi *i)
{
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += i->sweep_interval_ms / 1000;
    until.tv_nsec += (long)(i->sweep_interval_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&i->janitor_lock);
    int rc = 0;
    while (!atomic_load(&i->janitor_stop) && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&i->janitor_wake, &i->janitor_lock, &until);
    pthread_mutex_unlock(&i->janitor_lock);
    return !janitor_stopping(i);
}

static void *janitor_main(void *arg)
{
    odi *i = arg;
    while (janitor_wait(i))
        sweep(i);
    return NULL;
}

/* Blocks every signal in the janitor, like the core's threads. */
od_status odi_janitor_start(odi *i)
{
    if (i->sweep_interval_ms == 0) {
        i->host->log(i->mod, OD_LOG_INFO,
                     "idempotency janitor off (idempotency_sweep_interval_ms = 0): expired "
                     "Idempotency-Key records are only replaced when their key is reused");
        return OD_OK;
    }
    atomic_store(&i->janitor_stop, 0);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&i->janitor, NULL, janitor_main, i);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        i->host->log(i->mod, OD_LOG_ERROR, "could not start the idempotency janitor thread");
        return OD_ERR_INTERNAL;
    }
    i->janitor_started = 1;
    i->host->log(i->mod, OD_LOG_INFO,
                 "idempotency janitor: every %" PRIu32 " ms, deletes Idempotency-Key records "
                 "older than %" PRId64 " h",
                 i->sweep_interval_ms, i->ttl_ms / 3600000);
    return OD_OK;
}

void odi_janitor_stop(odi *i)
{
    if (!i->janitor_started)
        return;
    pthread_mutex_lock(&i->janitor_lock);
    atomic_store(&i->janitor_stop, 1);
    pthread_cond_broadcast(&i->janitor_wake);
    pthread_mutex_unlock(&i->janitor_lock);
    pthread_join(i->janitor, NULL);
    i->janitor_started = 0;
}

/* ---- init and destroy ---- */

od_status odi_config(odi *i, const od_host_api *host, od_module *mod, const od_storage *storage)
{
    int64_t ttl_hours = 0, interval = 0;
    i->host = host;
    i->mod = mod;
    i->storage = storage;
    od_status s = host->config_int(mod, "idempotency_ttl_hours", IDEM_TTL_HOURS_DEFAULT, 1,
                                   IDEM_TTL_HOURS_MAX, &ttl_hours);
    if (s == OD_OK)
        s = host->config_int(mod, "idempotency_sweep_interval_ms", IDEM_SWEEP_INTERVAL_DEFAULT, 0,
                             IDEM_SWEEP_INTERVAL_MAX, &interval);
    i->ttl_ms = ttl_hours * 3600 * 1000;
    i->sweep_interval_ms = (uint32_t)interval;
    return s;
}

od_status odi_metrics(odi *i)
{
    i->expired = i->host->metric(i->mod, OD_METRIC_COUNTER, "orderd_idempotency_expired_total",
                                 "Idempotency-Key records deleted after idempotency_ttl_hours",
                                 NULL);
    return i->expired ? OD_OK : OD_ERR_NOMEM;
}

od_status odi_sync_init(odi *i)
{
    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0)
        return OD_ERR_NOMEM;
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&i->janitor_wake, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0)
        return OD_ERR_NOMEM;
    pthread_mutex_init(&i->janitor_lock, NULL);
    return OD_OK;
}

void odi_destroy(odi *i)
{
    odi_janitor_stop(i);
    pthread_cond_destroy(&i->janitor_wake);
    pthread_mutex_destroy(&i->janitor_lock);
}
