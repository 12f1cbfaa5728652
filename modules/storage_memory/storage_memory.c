/*
 * storage_memory - the in-memory storage backend (OD_KIND_STORAGE).
 *
 * Documents, secondary indexes and counters live in process memory and are
 * lost on exit: for development, tests and single-node demos. It reads no
 * config keys (group "storage") and owns no threads. Every table has its own
 * pthread rwlock (readers run in parallel, writers per table); the table
 * registry (odm_tables.h) is fixed once init is over (define_table runs on
 * the main thread only, before any request), so finding a table takes no
 * lock. Counters live in per-table-name namespaces (up to 64) created by the
 * first counter_set; that registry is append-only, so finding one is
 * lock-free and a small mutex serialises only the creation of a new one.
 *
 * put_batch takes the write locks of its tables in registry order (every
 * other op holds one table lock at a time, so nothing can deadlock), checks
 * each put in order against what the earlier ones leave, allocates for all,
 * then applies all: no failure point once anything changed. No queue keeps
 * its messages here, so store() is NULL and a batch with a message is
 * OD_ERR_UNSUPPORTED.
 *
 * Data structures: sorted arrays with binary search (O(log n) lookups,
 * memmove on insert/delete, which is cheap at the sizes this backend is for).
 * An index is an array of (value, document) pairs ordered by (value, key), so
 * a unique lookup and the first document of a query are one binary search.
 * Cursors are "m1" + kind ('s' scan / 'q' query) + direction ('a' / 'd') +
 * "." + base64url(last key), decoded strictly.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <orderd/orderd.h>

#include "odm_b64.h"
#include "odm_tables.h"

#define SM_MAX_NAMESPACES 64
#define SM_MAX_INDEXES OD_INDEXES_MAX
#define SM_NAME_MAX OD_NAME_MAX
#define SM_TOKEN_MAX 255
#define SM_PAGE_MAX 1000
#define SM_TOKEN_TTL_MS (7LL * 24 * 3600 * 1000)
#define SM_TOKEN_SWEEP_MIN 1024
#define SM_CURSOR_PREFIX_LEN 5 /* "m1sa." */

/* ---- a sorted array of fixed-size elements ---- */

typedef struct sm_vec {
    char *data;
    size_t n, cap, elsize;
} sm_vec;

/* Compare a probe with an element: <0, 0, >0 like strcmp. */
typedef int (*sm_cmp_fn)(const void *probe, const void *elem);

static void *vec_at(const sm_vec *v, size_t i)
{
    return v->data + i * v->elsize;
}

/* First position whose element is >= probe; *found when it is == probe. */
static size_t vec_lower_bound(const sm_vec *v, const void *probe, sm_cmp_fn cmp, int *found)
{
    size_t lo = 0, hi = v->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp(probe, vec_at(v, mid)) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (found)
        *found = lo < v->n && cmp(probe, vec_at(v, lo)) == 0;
    return lo;
}

/* Make room for `extra` more elements, so the inserts that follow cannot
 * fail half-way through an update. */
static od_status vec_reserve(const od_host_api *h, sm_vec *v, size_t extra)
{
    if (v->n + extra <= v->cap)
        return OD_OK;
    size_t cap = v->cap ? v->cap * 2 : 16;
    while (cap < v->n + extra)
        cap *= 2;
    char *data = h->realloc(v->data, cap * v->elsize);
    if (!data)
        return OD_ERR_NOMEM;
    v->data = data;
    v->cap = cap;
    return OD_OK;
}

static void vec_insert_at(sm_vec *v, size_t pos, const void *elem)
{
    memmove(vec_at(v, pos + 1), vec_at(v, pos), (v->n - pos) * v->elsize);
    memcpy(vec_at(v, pos), elem, v->elsize);
    v->n++;
}

static void vec_remove_at(sm_vec *v, size_t pos)
{
    memmove(vec_at(v, pos), vec_at(v, pos + 1), (v->n - pos - 1) * v->elsize);
    v->n--;
}

/* ---- state ---- */

typedef struct sm_doc {
    char *key;
    char *body;
    size_t len;
    uint64_t version;
    char *values[SM_MAX_INDEXES]; /* by index position; NULL = not in that index */
} sm_doc;

typedef struct sm_entry { /* one element of an index */
    const char *value;    /* owned by doc->values[] */
    sm_doc *doc;
} sm_entry;

typedef struct sm_table {
    const odm_table *def;  /* name and indexes, in the registry */
    pthread_rwlock_t lock; /* guards docs and every index's entries */
    sm_vec entries[SM_MAX_INDEXES]; /* sm_entry, by (value, key), by index position */
    sm_vec docs;                    /* sm_doc *, by key */
} sm_table;

typedef struct sm_counter {
    char *key;
    int64_t value;
} sm_counter;

typedef struct sm_token {
    char *token;
    int64_t at_ms;
} sm_token;

typedef struct sm_counters { /* the counters of one table name */
    char name[SM_NAME_MAX + 1];
    pthread_mutex_t lock; /* guards counters, tokens, sweep_at */
    sm_vec counters;      /* sm_counter, by key */
    sm_vec tokens;        /* sm_token, by token: op tokens of this table */
    size_t sweep_at;      /* prune expired tokens when tokens.n reaches this */
} sm_counters;

typedef struct sm_store {
    const od_host_api *host;
    od_module *mod;
    odm_tables tables; /* each table's ext: its sm_table */
    /* Append-only: a slot is written before n_namespaces is released to
     * readers, and never changes afterwards. ns_lock serialises writers. */
    sm_counters *namespaces[SM_MAX_NAMESPACES];
    atomic_size_t n_namespaces;
    pthread_mutex_t ns_lock;
} sm_store;

/* ---- comparators ---- */

static int cmp_doc_key(const void *probe, const void *elem)
{
    return strcmp(probe, (*(sm_doc *const *)elem)->key);
}

static int cmp_counter_key(const void *probe, const void *elem)
{
    return strcmp(probe, ((const sm_counter *)elem)->key);
}

static int cmp_token(const void *probe, const void *elem)
{
    return strcmp(probe, ((const sm_token *)elem)->token);
}

/* An index probe: a value and a key, where the key may sort before (-1) or
 * after (+1) every key of that value. */
typedef struct sm_probe {
    const char *value;
    const char *key;
    int edge; /* 0: use key; -1: before all keys; +1: after all keys */
} sm_probe;

static int cmp_entry(const void *probe, const void *elem)
{
    const sm_probe *p = probe;
    const sm_entry *e = elem;
    int c = strcmp(p->value, e->value);
    if (c != 0)
        return c;
    return p->edge ? p->edge : strcmp(p->key, e->doc->key);
}

/* ---- validation ---- */

static int valid_value(const char *s, size_t max)
{
    if (!s)
        return 0;
    size_t n = strnlen(s, max + 1);
    return n >= 1 && n <= max;
}

static sm_table *find_table(const sm_store *st, const char *name)
{
    const odm_table *t = odm_table_find(&st->tables, name);
    return t ? t->ext : NULL;
}

/* The position of an index, -1 if t has none of that name. */
static int find_index(const sm_table *t, const char *name)
{
    const odm_index *x = odm_index_find(t->def, name);
    return x ? (int)odm_index_pos(t->def, x) : -1;
}

/* ---- cursors ---- */

/* "m1" + kind + dir + "." + base64url(key) without padding. */
static char *cursor_encode(const od_host_api *h, char kind, uint32_t descending, const char *key)
{
    size_t n = strlen(key);
    char *out = h->alloc(SM_CURSOR_PREFIX_LEN + ODM_B64URL_LEN(n) + 1);
    if (!out)
        return NULL;
    char *o = out;
    *o++ = 'm', *o++ = '1', *o++ = kind, *o++ = descending ? 'd' : 'a', *o++ = '.';
    odm_b64url_encode(key, n, o);
    return out;
}

/* Strictly decode a cursor of this kind and direction into key[OD_KEY_MAX + 1].
 * Anything this backend could not have produced is OD_ERR_INVALID. */
static od_status cursor_decode(const char *cursor, char kind, uint32_t descending, char *key)
{
    size_t len = strnlen(cursor, OD_CURSOR_MAX + 1);
    if (len > OD_CURSOR_MAX || len <= SM_CURSOR_PREFIX_LEN || cursor[0] != 'm' ||
        cursor[1] != '1' || cursor[2] != kind || cursor[3] != (descending ? 'd' : 'a') ||
        cursor[4] != '.')
        return OD_ERR_INVALID;
    long n = odm_b64url_decode(cursor + SM_CURSOR_PREFIX_LEN, len - SM_CURSOR_PREFIX_LEN,
                               (unsigned char *)key, OD_KEY_MAX);
    if (n < 0)
        return OD_ERR_INVALID;
    key[n] = '\0';
    return od_storage_valid_key(key) && strlen(key) == (size_t)n ? OD_OK : OD_ERR_INVALID;
}

/* ---- documents out ---- */

static od_status doc_copy_out(const od_host_api *h, const sm_doc *d, od_doc *out)
{
    out->key = h->strdup(d->key);
    out->body = h->alloc(d->len + 1);
    if (!out->key || !out->body) {
        od_doc_clear(h, out);
        return OD_ERR_NOMEM;
    }
    memcpy(out->body, d->body, d->len + 1);
    out->len = d->len;
    out->version = d->version;
    return OD_OK;
}

/* A page being filled under the table's read lock. */
typedef struct sm_pager {
    const od_host_api *h;
    od_page *out;
    uint32_t limit;
    const sm_doc *last;
    int more; /* a document exists after the page */
} sm_pager;

/* Take one document; returns 0 once the page is full (after noting that
 * more exist). */
static int pager_take(sm_pager *p, const sm_doc *d, od_status *st)
{
    if (p->out->count == p->limit) {
        p->more = 1;
        return 0;
    }
    *st = doc_copy_out(p->h, d, &p->out->items[p->out->count]);
    if (*st != OD_OK)
        return 0;
    p->out->count++;
    p->last = d;
    return 1;
}

static od_status pager_begin(sm_pager *p, const od_host_api *h, od_page *out, uint32_t limit)
{
    if (limit < 1 || limit > SM_PAGE_MAX)
        return OD_ERR_INVALID;
    memset(out, 0, sizeof *out);
    memset(p, 0, sizeof *p);
    p->h = h;
    p->out = out;
    p->limit = limit;
    return OD_OK;
}

static od_status pager_allocate(sm_pager *p, size_t available)
{
    size_t n = available < p->limit ? available : p->limit;
    p->out->items = p->h->calloc(n ? n : 1, sizeof(od_doc));
    return p->out->items ? OD_OK : OD_ERR_NOMEM;
}

static od_status pager_finish(sm_pager *p, od_status st, char kind, uint32_t descending)
{
    if (st == OD_OK && p->more) {
        p->out->next = cursor_encode(p->h, kind, descending, p->last->key);
        if (!p->out->next)
            st = OD_ERR_NOMEM;
    }
    if (st != OD_OK)
        od_page_clear(p->h, p->out);
    return st;
}

/* ---- define_table ---- */

static od_status sm_define_table(void *self, const od_table_def *def)
{
    sm_store *st = self;
    const odm_table *old;
    od_status s = odm_tables_check(&st->tables, def, &old);
    if (s != OD_OK || old)
        return s;
    sm_table *t = st->host->calloc(1, sizeof *t);
    if (!t)
        return OD_ERR_NOMEM;
    if (pthread_rwlock_init(&t->lock, NULL) != 0) {
        st->host->free(t);
        return OD_ERR_NOMEM;
    }
    t->docs.elsize = sizeof(sm_doc *);
    for (uint32_t i = 0; i < def->n_indexes; i++)
        t->entries[i].elsize = sizeof(sm_entry);
    t->def = odm_tables_add(&st->tables, def, t);
    return OD_OK;
}

/* ---- get / del ---- */

static sm_doc *table_find_doc(const sm_table *t, const char *key, size_t *pos)
{
    int found;
    size_t p = vec_lower_bound(&t->docs, key, cmp_doc_key, &found);
    if (pos)
        *pos = p;
    return found ? *(sm_doc **)vec_at(&t->docs, p) : NULL;
}

static od_status sm_get(void *self, const char *table, const char *key, od_doc *out)
{
    sm_store *st = self;
    sm_table *t = find_table(st, table);
    if (!t || !od_storage_valid_key(key) || !out)
        return OD_ERR_INVALID;
    pthread_rwlock_rdlock(&t->lock);
    const sm_doc *d = table_find_doc(t, key, NULL);
    od_status s = d ? doc_copy_out(st->host, d, out) : OD_ERR_NOT_FOUND;
    pthread_rwlock_unlock(&t->lock);
    return s;
}

static void index_remove(sm_vec *entries, const char *value, sm_doc *d)
{
    int found;
    sm_probe p = {value, d->key, 0};
    size_t pos = vec_lower_bound(entries, &p, cmp_entry, &found);
    if (found)
        vec_remove_at(entries, pos);
}

static void doc_free(const od_host_api *h, sm_doc *d)
{
    for (size_t i = 0; i < SM_MAX_INDEXES; i++)
        h->free(d->values[i]);
    h->free(d->key);
    h->free(d->body);
    h->free(d);
}

static od_status sm_del(void *self, const char *table, const char *key, uint64_t expected)
{
    sm_store *st = self;
    sm_table *t = find_table(st, table);
    if (!t || !od_storage_valid_key(key))
        return OD_ERR_INVALID;
    od_status s = OD_OK;
    size_t pos;
    pthread_rwlock_wrlock(&t->lock);
    sm_doc *d = table_find_doc(t, key, &pos);
    if (!d)
        s = OD_ERR_NOT_FOUND;
    else if (expected && d->version != expected)
        s = OD_ERR_CONFLICT;
    else {
        for (uint32_t i = 0; i < t->def->n_indexes; i++)
            if (d->values[i])
                index_remove(&t->entries[i], d->values[i], d);
        vec_remove_at(&t->docs, pos);
    }
    pthread_rwlock_unlock(&t->lock);
    if (s == OD_OK)
        doc_free(st->host, d);
    return s;
}

/* ---- put ---- */

/* A put, validated and prepared outside the lock where possible. */
typedef struct sm_put {
    const char *key;
    const char *body;
    size_t len;
    uint32_t cond;
    uint64_t expected;
    const char *values[SM_MAX_INDEXES]; /* new value per index position, borrowed */
    /* Allocated before anything changes, so the commit cannot fail. */
    char *body_copy;
    char *value_copies[SM_MAX_INDEXES]; /* only for values that change */
    sm_doc *new_doc;                    /* only when creating */
} sm_put;

/* One put of a batch: its table, the document its key names now (NULL if
 * none) and the put itself. */
typedef struct sm_bput {
    sm_table *t;
    sm_doc *cur;
    size_t room; /* 1 + the batch's earlier puts into the same table */
    sm_put p;
} sm_bput;

/* put()'s argument checks: the table, the key, the condition and the index
 * values, resolved into *t and p (p's key, body and cond already set). */
static od_status put_resolve(const sm_store *st, const char *table, const od_index_value *idx,
                             size_t n_idx, sm_table **t, sm_put *p)
{
    *t = find_table(st, table);
    if (!*t || !od_storage_valid_key(p->key) || !p->body || p->cond > OD_PUT_IF_VERSION)
        return OD_ERR_INVALID;
    return odm_tables_values(&st->tables, (*t)->def, idx, n_idx, p->values) ? OD_OK
                                                                             : OD_ERR_INVALID;
}

static int value_changes(const char *old, const char *new_value)
{
    if (!old || !new_value)
        return old != new_value;
    return strcmp(old, new_value) != 0;
}

/* The document a unique index gives this value to, or NULL. */
static const sm_doc *unique_holder(const sm_vec *entries, const char *value)
{
    sm_probe probe = {value, NULL, -1};
    size_t pos = vec_lower_bound(entries, &probe, cmp_entry, NULL);
    const sm_entry *e = pos < entries->n ? vec_at(entries, pos) : NULL;
    return e && strcmp(e->value, value) == 0 ? e->doc : NULL;
}

/* What a batch's earlier puts (applied first) do to a unique value of index
 * ix of table t: 1 when one of them takes it; else *holder is cleared when
 * one of them moves the current holder off it. */
static int earlier_take(const sm_bput *b, size_t n, const sm_table *t, uint32_t ix,
                        const char *value, const sm_doc **holder)
{
    for (size_t j = 0; j < n; j++) {
        if (b[j].t != t)
            continue;
        if (b[j].p.values[ix] && strcmp(b[j].p.values[ix], value) == 0)
            return 1;
        if (b[j].cur == *holder)
            *holder = NULL;
    }
    return 0;
}

/* Check a put against the table as the batch's puts before[0..n_before)
 * leave it (none for put()), so a batch fails exactly where put() called
 * in order would. */
static od_status put_check(const sm_table *t, const sm_doc *cur, const sm_put *p,
                           const sm_bput *before, size_t n_before)
{
    if (p->cond == OD_PUT_IF_ABSENT && cur)
        return OD_ERR_EXISTS;
    if (p->cond == OD_PUT_IF_VERSION && !cur)
        return OD_ERR_NOT_FOUND;
    if (p->cond == OD_PUT_IF_VERSION && cur->version != p->expected)
        return OD_ERR_CONFLICT;
    for (uint32_t i = 0; i < t->def->n_indexes; i++) {
        if (!t->def->indexes[i].unique || !p->values[i])
            continue;
        const sm_doc *holder = unique_holder(&t->entries[i], p->values[i]);
        if (earlier_take(before, n_before, t, i, p->values[i], &holder) ||
            (holder && holder != cur))
            return OD_ERR_EXISTS;
    }
    return OD_OK;
}

static void put_release(const od_host_api *h, sm_put *p)
{
    h->free(p->body_copy);
    for (size_t i = 0; i < SM_MAX_INDEXES; i++)
        h->free(p->value_copies[i]);
    if (p->new_doc) {
        h->free(p->new_doc->key);
        h->free(p->new_doc);
    }
}

/* Reserve room and copy everything the commit needs. room: how many
 * elements the commits to come may add to each array of t (each put adds at
 * most one), so a batch's commits cannot fail either. */
static od_status put_prepare(const od_host_api *h, sm_table *t, const sm_doc *cur, sm_put *p,
                             size_t room)
{
    if (!cur && vec_reserve(h, &t->docs, room) != OD_OK)
        return OD_ERR_NOMEM;
    if (!cur) {
        p->new_doc = h->calloc(1, sizeof(sm_doc));
        if (!p->new_doc || !(p->new_doc->key = h->strdup(p->key)))
            return OD_ERR_NOMEM;
    }
    p->body_copy = h->alloc(p->len + 1);
    if (!p->body_copy)
        return OD_ERR_NOMEM;
    memcpy(p->body_copy, p->body, p->len);
    p->body_copy[p->len] = '\0';
    for (uint32_t i = 0; i < t->def->n_indexes; i++) {
        if (!p->values[i] || !value_changes(cur ? cur->values[i] : NULL, p->values[i]))
            continue;
        if (vec_reserve(h, &t->entries[i], room) != OD_OK ||
            !(p->value_copies[i] = h->strdup(p->values[i])))
            return OD_ERR_NOMEM;
    }
    return OD_OK;
}

/* Apply a prepared put; cannot fail. Index values are replaced together
 * with the body under the same write lock. */
static uint64_t put_commit(const od_host_api *h, sm_table *t, sm_doc *d, size_t pos, sm_put *p)
{
    if (p->new_doc) {
        d = p->new_doc;
        p->new_doc = NULL;
        vec_insert_at(&t->docs, pos, &d);
    }
    for (uint32_t i = 0; i < t->def->n_indexes; i++) {
        if (!value_changes(d->values[i], p->values[i]))
            continue;
        if (d->values[i])
            index_remove(&t->entries[i], d->values[i], d);
        h->free(d->values[i]);
        d->values[i] = p->value_copies[i];
        p->value_copies[i] = NULL;
        if (d->values[i]) {
            sm_probe probe = {d->values[i], d->key, 0};
            sm_entry e = {d->values[i], d};
            vec_insert_at(&t->entries[i], vec_lower_bound(&t->entries[i], &probe, cmp_entry, NULL),
                          &e);
        }
    }
    h->free(d->body);
    d->body = p->body_copy;
    d->len = p->len;
    p->body_copy = NULL;
    return ++d->version; /* a new doc starts at 0, so it gets 1 */
}

static od_status sm_put_op(void *self, const char *table, const char *key, const char *body,
                           size_t len, const od_index_value *idx, size_t n_idx, uint32_t cond,
                           uint64_t expected, uint64_t *new_version)
{
    sm_store *st = self;
    sm_table *t;
    sm_put p = {.key = key, .body = body, .len = len, .cond = cond, .expected = expected};
    if (put_resolve(st, table, idx, n_idx, &t, &p) != OD_OK)
        return OD_ERR_INVALID;
    size_t pos;
    pthread_rwlock_wrlock(&t->lock);
    sm_doc *cur = table_find_doc(t, key, &pos);
    od_status s = put_check(t, cur, &p, NULL, 0);
    if (s == OD_OK)
        s = put_prepare(st->host, t, cur, &p, 1);
    if (s == OD_OK) {
        uint64_t v = put_commit(st->host, t, cur, pos, &p);
        if (new_version)
            *new_version = v;
    }
    pthread_rwlock_unlock(&t->lock);
    put_release(st->host, &p);
    return s;
}

/* ---- put_batch ---- */

typedef struct sm_batch {
    sm_bput puts[OD_BATCH_MAX];
    size_t n;
    sm_table *locks[OD_BATCH_MAX]; /* the tables written, in registry order */
    size_t n_locks;
} sm_batch;

/* The batch's shape (od_storage_valid_batch) and put()'s checks on every
 * put. Nothing is allocated. */
static od_status batch_resolve(const sm_store *st, const od_put *const *puts, size_t n,
                               sm_batch *b)
{
    if (!od_storage_valid_batch(puts, n))
        return OD_ERR_INVALID;
    for (size_t i = 0; i < n; i++) {
        const od_put *in = puts[i];
        sm_bput *bp = &b->puts[i];
        bp->p = (sm_put){.key = in->key, .body = in->body, .len = in->len, .cond = in->cond,
                         .expected = in->expected};
        if (put_resolve(st, in->table, in->idx, in->n_idx, &bp->t, &bp->p) != OD_OK)
            return OD_ERR_INVALID;
        bp->room = 1;
        for (size_t j = 0; j < i; j++) /* earlier puts into this table need room too */
            bp->room += b->puts[j].t == bp->t;
    }
    b->n = n;
    /* One global lock order, the registry's: put() and every other op hold
     * one table lock at a time, so batches cannot deadlock with them or
     * with each other. */
    b->n_locks = 0;
    for (size_t k = 0; k < st->tables.n; k++)
        for (size_t i = 0; i < n; i++)
            if (b->puts[i].t == st->tables.tables[k].ext) {
                b->locks[b->n_locks++] = b->puts[i].t;
                break;
            }
    return OD_OK;
}

/* Under every lock: check each put in order against what the earlier ones
 * leave, then allocate for all, then apply all. Only the allocation can
 * fail, and it comes before any change. */
static od_status batch_write(const od_host_api *h, sm_batch *b, uint64_t *versions,
                             size_t *failed)
{
    od_status s = OD_OK;
    for (size_t i = 0; s == OD_OK && i < b->n; i++) {
        sm_bput *bp = &b->puts[i];
        bp->cur = table_find_doc(bp->t, bp->p.key, NULL);
        s = put_check(bp->t, bp->cur, &bp->p, b->puts, i);
        if (s != OD_OK && failed)
            *failed = i;
    }
    for (size_t i = 0; s == OD_OK && i < b->n; i++)
        s = put_prepare(h, b->puts[i].t, b->puts[i].cur, &b->puts[i].p, b->puts[i].room);
    for (size_t i = 0; s == OD_OK && i < b->n; i++) {
        sm_bput *bp = &b->puts[i];
        size_t pos = 0;
        if (!bp->cur) /* earlier creates in this table moved its place */
            table_find_doc(bp->t, bp->p.key, &pos);
        uint64_t v = put_commit(h, bp->t, bp->cur, pos, &bp->p);
        if (versions)
            versions[i] = v;
    }
    return s;
}

static od_status sm_put_batch(void *self, const od_put *const *puts, size_t n,
                              const od_outbox *msg, uint64_t *versions, size_t *failed)
{
    sm_store *st = self;
    sm_batch b;
    if (failed)
        *failed = OD_BATCH_NONE;
    if (msg) /* no queue keeps its messages in this process's tables */
        return OD_ERR_UNSUPPORTED;
    if (batch_resolve(st, puts, n, &b) != OD_OK)
        return OD_ERR_INVALID;
    for (size_t k = 0; k < b.n_locks; k++)
        pthread_rwlock_wrlock(&b.locks[k]->lock);
    od_status s = batch_write(st->host, &b, versions, failed);
    for (size_t k = b.n_locks; k > 0; k--)
        pthread_rwlock_unlock(&b.locks[k - 1]->lock);
    for (size_t i = 0; i < b.n; i++)
        put_release(st->host, &b.puts[i].p);
    return s;
}

/* ---- lookup / query / scan ---- */

static od_status sm_lookup(void *self, const char *table, const char *index, const char *value,
                           od_doc *out)
{
    sm_store *st = self;
    sm_table *t = find_table(st, table);
    int ix = t ? find_index(t, index) : -1;
    if (ix < 0 || !t->def->indexes[ix].unique || !odm_tables_valid_value(&st->tables, value) ||
        !out)
        return OD_ERR_INVALID;
    od_status s = OD_ERR_NOT_FOUND;
    pthread_rwlock_rdlock(&t->lock);
    const sm_vec *v = &t->entries[ix];
    sm_probe probe = {value, NULL, -1};
    size_t pos = vec_lower_bound(v, &probe, cmp_entry, NULL);
    if (pos < v->n && strcmp(((sm_entry *)vec_at(v, pos))->value, value) == 0)
        s = doc_copy_out(st->host, ((sm_entry *)vec_at(v, pos))->doc, out);
    pthread_rwlock_unlock(&t->lock);
    return s;
}

/* Walk index entries of one value from `start` in the given direction. */
static od_status query_walk(sm_pager *pg, const sm_vec *v, const char *value, size_t start,
                            uint32_t descending)
{
    /* Entries from start to the end in the walk's direction bound the page. */
    od_status s = pager_allocate(pg, descending ? start + 1 : v->n - start);
    for (size_t i = start; s == OD_OK && i < v->n; i = descending ? i - 1 : i + 1) {
        const sm_entry *e = vec_at(v, i);
        if (strcmp(e->value, value) != 0 || !pager_take(pg, e->doc, &s))
            break;
        if (descending && i == 0)
            break;
    }
    return s;
}

static od_status sm_query(void *self, const char *table, const char *index, const char *value,
                          const char *cursor, uint32_t limit, uint32_t descending, od_page *out)
{
    sm_store *st = self;
    sm_table *t = find_table(st, table);
    int ix = t ? find_index(t, index) : -1;
    char after[OD_KEY_MAX + 1];
    sm_pager pg;
    if (ix < 0 || !odm_tables_valid_value(&st->tables, value) || descending > 1 || !out ||
        (cursor && cursor_decode(cursor, 'q', descending, after) != OD_OK) ||
        pager_begin(&pg, st->host, out, limit) != OD_OK)
        return OD_ERR_INVALID;
    sm_probe probe = {value, after, cursor ? 0 : (descending ? 1 : -1)};
    pthread_rwlock_rdlock(&t->lock);
    const sm_vec *v = &t->entries[ix];
    int found;
    size_t pos = vec_lower_bound(v, &probe, cmp_entry, &found);
    od_status s = OD_OK;
    if (!descending)
        s = query_walk(&pg, v, value, pos + (size_t)found, 0);
    else if (pos > 0)
        s = query_walk(&pg, v, value, pos - 1, 1);
    pthread_rwlock_unlock(&t->lock);
    return pager_finish(&pg, s, 'q', descending);
}

static od_status scan_walk(sm_pager *pg, const sm_vec *docs, size_t start, size_t available,
                           uint32_t descending)
{
    od_status s = pager_allocate(pg, available);
    for (size_t k = 0; s == OD_OK && k < available; k++) {
        size_t i = descending ? start - k : start + k;
        if (!pager_take(pg, *(sm_doc **)vec_at(docs, i), &s))
            break;
    }
    return s;
}

static od_status sm_scan(void *self, const char *table, const char *cursor, uint32_t limit,
                         uint32_t descending, od_page *out)
{
    sm_store *st = self;
    sm_table *t = find_table(st, table);
    char after[OD_KEY_MAX + 1];
    sm_pager pg;
    if (!t || descending > 1 || !out ||
        (cursor && cursor_decode(cursor, 's', descending, after) != OD_OK) ||
        pager_begin(&pg, st->host, out, limit) != OD_OK)
        return OD_ERR_INVALID;
    pthread_rwlock_rdlock(&t->lock);
    const sm_vec *docs = &t->docs;
    int found = 0;
    size_t pos = cursor ? vec_lower_bound(docs, after, cmp_doc_key, &found) : 0;
    od_status s;
    if (!descending) {
        size_t start = pos + (size_t)found;
        s = scan_walk(&pg, docs, start, docs->n - start, 0);
    } else {
        size_t end = cursor ? pos : docs->n; /* documents [0, end) remain */
        s = end ? scan_walk(&pg, docs, end - 1, end, 1) : pager_allocate(&pg, 0);
    }
    pthread_rwlock_unlock(&t->lock);
    return pager_finish(&pg, s, 's', descending);
}

/* ---- counters ---- */

static sm_counters *namespace_find(sm_store *st, const char *name)
{
    size_t n = atomic_load_explicit(&st->n_namespaces, memory_order_acquire);
    for (size_t i = 0; i < n; i++)
        if (strcmp(st->namespaces[i]->name, name) == 0)
            return st->namespaces[i];
    return NULL;
}

static sm_counters *namespace_new(const od_host_api *h, const char *name)
{
    sm_counters *c = h->calloc(1, sizeof *c);
    if (!c)
        return NULL;
    if (pthread_mutex_init(&c->lock, NULL) != 0) {
        h->free(c);
        return NULL;
    }
    strcpy(c->name, name);
    c->counters.elsize = sizeof(sm_counter);
    c->tokens.elsize = sizeof(sm_token);
    c->sweep_at = SM_TOKEN_SWEEP_MIN;
    return c;
}

/* Under ns_lock: add a namespace and publish it to lock-free readers. */
static od_status namespace_append(sm_store *st, const char *name, sm_counters **out)
{
    size_t n = atomic_load_explicit(&st->n_namespaces, memory_order_relaxed);
    if (n == SM_MAX_NAMESPACES) {
        st->host->log(st->mod, OD_LOG_ERROR, "counter table %s: more than %d counter tables",
                      name, SM_MAX_NAMESPACES);
        return OD_ERR_INVALID;
    }
    if ((*out = namespace_new(st->host, name)) == NULL)
        return OD_ERR_NOMEM;
    st->namespaces[n] = *out;
    atomic_store_explicit(&st->n_namespaces, n + 1, memory_order_release);
    return OD_OK;
}

/* Namespaces are never removed, so a pointer stays valid until destroy. */
static od_status namespace_get_or_create(sm_store *st, const char *name, sm_counters **out)
{
    if ((*out = namespace_find(st, name)) != NULL)
        return OD_OK;
    od_status s = OD_OK;
    pthread_mutex_lock(&st->ns_lock);
    *out = namespace_find(st, name); /* another thread may have created it */
    if (!*out)
        s = namespace_append(st, name, out);
    pthread_mutex_unlock(&st->ns_lock);
    return s;
}

static sm_counter *counter_find(sm_counters *c, const char *key, size_t *pos)
{
    int found;
    size_t p = vec_lower_bound(&c->counters, key, cmp_counter_key, &found);
    if (pos)
        *pos = p;
    return found ? vec_at(&c->counters, p) : NULL;
}

/* Drop tokens older than the retention; amortised O(1) per token. */
static void tokens_sweep(const od_host_api *h, sm_counters *c)
{
    int64_t cutoff = h->now_ms() - SM_TOKEN_TTL_MS;
    size_t kept = 0;
    for (size_t i = 0; i < c->tokens.n; i++) {
        sm_token *t = vec_at(&c->tokens, i);
        if (t->at_ms < cutoff)
            h->free(t->token);
        else
            memmove(vec_at(&c->tokens, kept++), t, sizeof *t);
    }
    c->tokens.n = kept;
    c->sweep_at = kept * 2 > SM_TOKEN_SWEEP_MIN ? kept * 2 : SM_TOKEN_SWEEP_MIN;
}

static od_status counter_apply(const od_host_api *h, sm_counters *c, const char *key,
                               int64_t delta, int64_t floor, const char *token, int64_t *result,
                               int32_t *applied)
{
    sm_counter *ctr = counter_find(c, key, NULL);
    if (!ctr)
        return OD_ERR_NOT_FOUND;
    *result = ctr->value;
    int found = 0;
    size_t tpos = token ? vec_lower_bound(&c->tokens, token, cmp_token, &found) : 0;
    if (found)
        return OD_OK; /* already applied once: report the value, change nothing */
    int64_t next;
    if (__builtin_add_overflow(ctr->value, delta, &next))
        return OD_ERR_INVALID;
    if (next < floor)
        return OD_ERR_CONFLICT;
    if (token) {
        sm_token t = {h->strdup(token), h->now_ms()};
        if (!t.token || vec_reserve(h, &c->tokens, 1) != OD_OK) {
            h->free(t.token);
            return OD_ERR_NOMEM;
        }
        vec_insert_at(&c->tokens, tpos, &t);
    }
    ctr->value = next;
    *result = next;
    *applied = 1;
    return OD_OK;
}

static od_status sm_counter_add(void *self, const char *table, const char *key, int64_t delta,
                                int64_t floor, const char *token, int64_t *result,
                                int32_t *applied)
{
    sm_store *st = self;
    if (!od_storage_valid_name(table) || !od_storage_valid_key(key) || (token && !valid_value(token, SM_TOKEN_MAX)))
        return OD_ERR_INVALID;
    int64_t value = 0;
    int32_t did = 0;
    sm_counters *c = namespace_find(st, table);
    od_status s = OD_ERR_NOT_FOUND;
    if (c) {
        pthread_mutex_lock(&c->lock);
        s = counter_apply(st->host, c, key, delta, floor, token, &value, &did);
        if (c->tokens.n >= c->sweep_at)
            tokens_sweep(st->host, c);
        pthread_mutex_unlock(&c->lock);
    }
    if (result && (s == OD_OK || s == OD_ERR_CONFLICT))
        *result = value;
    if (applied)
        *applied = did;
    return s;
}

static od_status sm_counter_set(void *self, const char *table, const char *key, int64_t value)
{
    sm_store *st = self;
    if (!od_storage_valid_name(table) || !od_storage_valid_key(key))
        return OD_ERR_INVALID;
    sm_counters *c;
    od_status s = namespace_get_or_create(st, table, &c);
    if (s != OD_OK)
        return s;
    size_t pos;
    pthread_mutex_lock(&c->lock);
    sm_counter *ctr = counter_find(c, key, &pos);
    if (ctr) {
        ctr->value = value;
    } else {
        sm_counter n = {st->host->strdup(key), value};
        if (!n.key || vec_reserve(st->host, &c->counters, 1) != OD_OK) {
            st->host->free(n.key);
            s = OD_ERR_NOMEM;
        } else {
            vec_insert_at(&c->counters, pos, &n);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return s;
}

static od_status sm_counter_get(void *self, const char *table, const char *key, int64_t *value)
{
    sm_store *st = self;
    if (!od_storage_valid_name(table) || !od_storage_valid_key(key) || !value)
        return OD_ERR_INVALID;
    sm_counters *c = namespace_find(st, table);
    if (!c)
        return OD_ERR_NOT_FOUND;
    pthread_mutex_lock(&c->lock);
    const sm_counter *ctr = counter_find(c, key, NULL);
    if (ctr)
        *value = ctr->value;
    pthread_mutex_unlock(&c->lock);
    return ctr ? OD_OK : OD_ERR_NOT_FOUND;
}

static od_status sm_counter_del(void *self, const char *table, const char *key)
{
    sm_store *st = self;
    if (!od_storage_valid_name(table) || !od_storage_valid_key(key))
        return OD_ERR_INVALID;
    sm_counters *c = namespace_find(st, table);
    if (!c)
        return OD_ERR_NOT_FOUND;
    size_t pos;
    char *old = NULL;
    pthread_mutex_lock(&c->lock);
    sm_counter *ctr = counter_find(c, key, &pos);
    if (ctr) {
        old = ctr->key;
        vec_remove_at(&c->counters, pos);
    }
    pthread_mutex_unlock(&c->lock);
    st->host->free(old);
    return old ? OD_OK : OD_ERR_NOT_FOUND;
}

static od_status sm_ping(void *self)
{
    return OD_OK;
}

/* ---- lifecycle ---- */

static void table_free(const od_host_api *h, sm_table *t)
{
    for (size_t i = 0; i < t->docs.n; i++)
        doc_free(h, *(sm_doc **)vec_at(&t->docs, i));
    h->free(t->docs.data);
    for (uint32_t i = 0; i < t->def->n_indexes; i++)
        h->free(t->entries[i].data);
    pthread_rwlock_destroy(&t->lock);
    h->free(t);
}

static void namespace_free(const od_host_api *h, sm_counters *c)
{
    for (size_t i = 0; i < c->counters.n; i++)
        h->free(((sm_counter *)vec_at(&c->counters, i))->key);
    for (size_t i = 0; i < c->tokens.n; i++)
        h->free(((sm_token *)vec_at(&c->tokens, i))->token);
    h->free(c->counters.data);
    h->free(c->tokens.data);
    pthread_mutex_destroy(&c->lock);
    h->free(c);
}

static void sm_destroy(void *self)
{
    sm_store *st = self;
    if (!st)
        return;
    const od_host_api *h = st->host;
    for (size_t i = 0; i < st->tables.n; i++)
        table_free(h, st->tables.tables[i].ext);
    for (size_t i = 0; i < atomic_load(&st->n_namespaces); i++)
        namespace_free(h, st->namespaces[i]);
    pthread_mutex_destroy(&st->ns_lock);
    h->free(st);
}

static od_status sm_init(const od_host_api *host, od_module *mod, void **self)
{
    sm_store *st = host->calloc(1, sizeof *st);
    if (!st)
        return OD_ERR_NOMEM;
    if (pthread_mutex_init(&st->ns_lock, NULL) != 0) {
        host->free(st);
        return OD_ERR_NOMEM;
    }
    st->host = host;
    st->mod = mod;
    odm_tables_init(&st->tables, host, mod, "memory", NULL);
    atomic_init(&st->n_namespaces, 0);
    *self = st;
    return OD_OK;
}

static const od_storage_ops OPS = {
    .size = sizeof(od_storage_ops),
    .define_table = sm_define_table,
    .get = sm_get,
    .put = sm_put_op,
    .del = sm_del,
    .lookup = sm_lookup,
    .query = sm_query,
    .scan = sm_scan,
    .counter_add = sm_counter_add,
    .counter_set = sm_counter_set,
    .counter_get = sm_counter_get,
    .counter_del = sm_counter_del,
    .ping = sm_ping,
    .put_batch = sm_put_batch, /* .store stays NULL: no queue shares this store */
};

static const od_module_desc DESC = {
    OD_MODULE_HEADER(OD_KIND_STORAGE),
    .name = "storage_memory",
    .version = "1.0.0",
    .description = "in-memory storage backend (development and tests; not durable)",
    .init = sm_init,
    .destroy = sm_destroy,
    .ops = &OPS,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &DESC;
}
