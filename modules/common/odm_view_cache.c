/*
 * odm_view_cache.c - per-thread cache of rendered read views.
 *
 * A read handler renders a stored document into the JSON it answers with
 * (parse with json-c, copy the public fields, serialise). The same bytes come
 * out as long as the stored bytes (and, for products, the stock) are the
 * same, so each HTTP worker thread keeps the views it rendered last: a hit
 * skips the parse — which in json-c 0.16 takes glibc's global locale lock —
 * the build and the serialisation.
 *
 * Threads: each worker thread owns its cache (pthread key on the owning
 * module's odm_view_cache), so a lookup takes no lock. `lock` guards only the
 * list of all caches, touched when a thread makes its first cache, when it
 * exits (key destructor) and at destroy. Memory: at most SLOTS x ENTRY_MAX
 * per thread per module.
 */
#include <pthread.h>
#include <string.h>

#include "odm.h"

#define SLOTS 64           /* per thread, direct-mapped; a power of two */
#define ENTRY_MAX 4096     /* key + source + view bytes; larger are not cached */

/* One rendering: key NUL source view in one allocation (NULL = empty slot). */
typedef struct entry {
    char *bytes;
    size_t key_len, src_len, view_len;
    uint64_t version;
    int64_t extra;
} entry;

typedef struct thread_cache {
    odm_view_cache *owner;
    struct thread_cache *prev, *next; /* owner's list, under owner->lock */
    entry slots[SLOTS];
} thread_cache;

struct odm_view_cache {
    const od_host_api *host;
    pthread_key_t key;
    pthread_mutex_t lock;
    thread_cache *caches;
};

static void entry_clear(const od_host_api *h, entry *e)
{
    h->free(e->bytes);
    *e = (entry){0};
}

static void thread_cache_free(thread_cache *c)
{
    for (size_t i = 0; i < SLOTS; i++)
        entry_clear(c->owner->host, &c->slots[i]);
    c->owner->host->free(c);
}

static void unlink_cache(odm_view_cache *vc, thread_cache *c)
{
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        vc->caches = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
}

/* pthread key destructor: the worker thread is exiting. */
static void thread_exit(void *arg)
{
    thread_cache *c = arg;
    odm_view_cache *vc = c->owner;
    pthread_mutex_lock(&vc->lock);
    unlink_cache(vc, c);
    pthread_mutex_unlock(&vc->lock);
    thread_cache_free(c);
}

/* The calling thread's cache, made on first use; NULL (no caching) on OOM. */
static thread_cache *cache_for_thread(odm_view_cache *vc)
{
    thread_cache *c = pthread_getspecific(vc->key);
    if (c != NULL)
        return c;
    c = vc->host->calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->owner = vc;
    if (pthread_setspecific(vc->key, c) != 0) {
        vc->host->free(c);
        return NULL;
    }
    pthread_mutex_lock(&vc->lock);
    c->next = vc->caches;
    if (vc->caches != NULL)
        vc->caches->prev = c;
    vc->caches = c;
    pthread_mutex_unlock(&vc->lock);
    return c;
}

/* FNV-1a of the document key picks the slot. */
static entry *slot_for(thread_cache *c, const char *key)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++)
        h = (h ^ *p) * 16777619u;
    return &c->slots[h & (SLOTS - 1)];
}

od_status odm_view_cache_new(const od_host_api *h, odm_view_cache **out)
{
    odm_view_cache *vc = h->calloc(1, sizeof *vc);
    if (vc == NULL)
        return OD_ERR_NOMEM;
    vc->host = h;
    if (pthread_mutex_init(&vc->lock, NULL) != 0) {
        h->free(vc);
        return OD_ERR_NOMEM;
    }
    if (pthread_key_create(&vc->key, thread_exit) != 0) {
        pthread_mutex_destroy(&vc->lock);
        h->free(vc);
        return OD_ERR_NOMEM;
    }
    *out = vc;
    return OD_OK;
}

/* At destroy the HTTP workers are joined (STYLE.md §2), so no handler runs;
 * deleting the key first means no destructor can run into this code after
 * the module is gone. */
void odm_view_cache_free(odm_view_cache *vc)
{
    if (vc == NULL)
        return;
    pthread_key_delete(vc->key);
    while (vc->caches != NULL) {
        thread_cache *c = vc->caches;
        vc->caches = c->next;
        thread_cache_free(c);
    }
    pthread_mutex_destroy(&vc->lock);
    vc->host->free(vc);
}

/* Comparing the stored bytes, not only the version, keeps a hit correct even
 * if a backend ever reused a version for a re-created key. */
const char *odm_view_cache_find(odm_view_cache *vc, const od_doc *doc, int64_t extra, size_t *len)
{
    thread_cache *c = pthread_getspecific(vc->key);
    if (c == NULL)
        return NULL;
    const entry *e = slot_for(c, doc->key);
    size_t key_len = strlen(doc->key);
    if (e->bytes == NULL || e->version != doc->version || e->extra != extra ||
        e->key_len != key_len || e->src_len != doc->len ||
        memcmp(e->bytes, doc->key, key_len) != 0 ||
        memcmp(e->bytes + key_len + 1, doc->body, doc->len) != 0)
        return NULL;
    *len = e->view_len;
    return e->bytes + key_len + 1 + doc->len;
}

void odm_view_cache_store(odm_view_cache *vc, const od_doc *doc, int64_t extra, const char *view,
                          size_t view_len)
{
    thread_cache *c = cache_for_thread(vc);
    if (c == NULL)
        return;
    entry *e = slot_for(c, doc->key);
    size_t key_len = strlen(doc->key);
    size_t total = key_len + 1 + doc->len + view_len;
    entry_clear(vc->host, e);
    if (total > ENTRY_MAX || (e->bytes = vc->host->alloc(total)) == NULL)
        return;
    memcpy(e->bytes, doc->key, key_len + 1);
    memcpy(e->bytes + key_len + 1, doc->body, doc->len);
    memcpy(e->bytes + key_len + 1 + doc->len, view, view_len);
    *e = (entry){.bytes = e->bytes, .key_len = key_len, .src_len = doc->len,
                 .view_len = view_len, .version = doc->version, .extra = extra};
}
