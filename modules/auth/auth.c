/*
 * auth - login (POST /api/login) and bearer-token verification for the core.
 *
 * Issues HS256 JWTs (claims sub, role, iat, exp, iss and the private claim
 * tv) for users of the storage table "users" (unique index "email";
 * documents written by the users module) and registers the verifier every
 * USER/ADMIN route goes through. Failed logins per (email, client address)
 * are rate limited.
 *
 * Config group "auth": jwt_secret (>= 32 bytes; env JWT_SECRET),
 * generate_dev_secret (bool, false), issuer ("orderd"), token_ttl_seconds
 * (60..2592000, 3600), login_max_failures (1..1000, 5), login_window_seconds
 * (1..86400, 300), argon2_iterations / argon2_memory_kib (cost of the dummy
 * hash checked for unknown e-mails; set them like the users module's),
 * revocation_check_ms (0..3600000, 5000).
 * Metrics: orderd_logins_total{result="success"|"invalid_credentials"|"rate_limited"},
 * orderd_auth_token_cache_total{result="hit"|"miss"} (miss = a full check),
 * orderd_auth_user_checks_total{result="valid"|"revoked"|"error"}.
 * Threads: none of its own. Handlers and the verifier run on HTTP workers;
 * the mutable state is the rate-limit table (striped mutexes), the hasher's
 * semaphore and one verified-token cache per worker thread (thread-specific
 * data, so a cache hit takes no lock at all).
 *
 * The token cache: a full verification (base64, HMAC set-up, two JSON
 * parses) costs tens of microseconds, and a client sends the same token on
 * every request. Each thread remembers up to TC_SLOTS tokens it verified
 * (direct-mapped by an FNV-1a hash of the token: a newer token evicts the
 * one in its slot) with the principal and exp; a hit still checks exp
 * against the clock. The stored token is compared in full with
 * CRYPTO_memcmp: an early-exit compare would leak a cached valid token
 * byte by byte through timing, and the slot hash only picks where to look
 * (an attacker who steers many tokens into one slot only evicts). Storing
 * the token instead of a SHA-256 of it saves the digest on every request;
 * tokens over TC_TOKEN_MAX bytes are simply verified in full each time. Only tokens
 * that passed every check are cached.
 *
 * Revocation: the user document carries tokenVersion (absent = 0), which
 * the users module increments on a password change; login signs it into
 * the token as "tv" (absent = 0). A token is accepted only while its user
 * exists and tv equals the stored tokenVersion, and the role granted is the
 * document's current one, not the claim: a demoted admin or a deleted user
 * loses access the same way a changed password does. A full check reads the
 * document; a cache hit re-reads it once the entry's last read is
 * revocation_check_ms old (0 = every request), so a revoked token stops
 * working on every instance sharing the storage within that time, while a
 * hit inside the interval still touches no storage. A re-read that finds the
 * document's storage version unchanged skips the JSON parse. When the
 * storage cannot answer, the verifier returns OD_ERR_UNAVAILABLE (the core
 * answers 503, as every handler does in an outage) and never accepts the
 * token: a 401 would tell clients to drop a good token, and accepting it
 * would let a revoked one through. The cache entry survives, so recovery
 * costs no full check. That read is the verifier's only blocking call
 * (bounded by the backend's timeout), on the HTTP worker like a handler's.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>
#include <openssl/crypto.h>

#include "odm.h"

#define SECRET_MIN 32
#define SECRET_MAX 512
#define DEV_SECRET_LEN 32
#define TOKEN_MAX 8192
#define CLOCK_SKEW_S 60
#define SUB_MAX 63
#define PASSWORD_MAX 1024

#define TC_SLOTS 32      /* per thread, direct-mapped by token hash */
#define TC_TOKEN_MAX 512 /* longer tokens are not cached (ours are ~250 bytes) */

#define RL_STRIPES 64
#define RL_SLOTS 16 /* per stripe: RL_STRIPES * RL_SLOTS entries in all */
#define RL_CLIENT_MAX 63
#define RL_KEY_MAX (ODM_EMAIL_MAX + 1 + RL_CLIENT_MAX + 1)

enum { LOGIN_SUCCESS, LOGIN_FAILURE, LOGIN_LIMITED, LOGIN_RESULTS };
enum { TC_HIT, TC_MISS, TC_RESULTS };
enum { UC_VALID, UC_REVOKED, UC_ERROR, UC_RESULTS };

static const char INVALID_CREDENTIALS[] = "Invalid email or password";

/* One (email, client) pair's failed logins in the current window. */
typedef struct rl_slot {
    char key[RL_KEY_MAX]; /* "client\nemail"; "" = free */
    uint32_t failures;
    int64_t window_start_ms;
} rl_slot;

/* The lock guards its slots only; a key always maps to the same stripe, so
 * logins for different keys rarely contend and never take a global lock. */
typedef struct rl_stripe {
    pthread_mutex_t lock;
    rl_slot slots[RL_SLOTS];
} rl_stripe;

/* A token that passed verification; exp == 0 marks a free slot. role is
 * the user document's, as of checked_ms (wall clock, ms), when the document
 * had storage version doc_version. */
typedef struct tc_entry {
    char token[TC_TOKEN_MAX];
    size_t len;
    int64_t exp;
    int64_t tv;
    int64_t checked_ms;
    uint64_t doc_version;
    uint32_t role;
    char user_id[SUB_MAX + 1];
} tc_entry;

/* What the user document says about a token's subject. */
typedef struct user_state {
    uint64_t version; /* storage version of the document read; 0 = none */
    uint32_t role;
} user_state;

struct auth;

/* One thread's cache. Only its thread reads or writes the slots; the
 * next/prev links belong to auth.tc_lock. */
typedef struct tc_cache {
    struct auth *owner;
    struct tc_cache *next, *prev;
    tc_entry slots[TC_SLOTS];
} tc_cache;

typedef struct auth {
    const od_host_api *host;
    od_module *mod;
    const od_storage *storage;
    /* Read-only after init. */
    unsigned char secret[SECRET_MAX];
    size_t secret_len;
    const char *issuer;
    int64_t ttl_s;
    int64_t max_failures;
    int64_t window_ms;
    int64_t recheck_ms; /* revocation_check_ms */
    uint64_t rl_seed; /* random, so clients cannot aim keys at one stripe */
    odm_hasher *hasher;
    char dummy_hash[ODM_HASH_MAX];
    od_metric *logins[LOGIN_RESULTS]; /* counters, updated lock-free */
    od_metric *tc_results[TC_RESULTS];
    od_metric *uc_results[UC_RESULTS];
    pthread_key_t tc_key;             /* this thread's tc_cache */
    int tc_key_ok;
    /* Every live tc_cache, so destroy frees those of threads still running.
     * Taken once per thread (first use, exit), never on a cache hit. */
    pthread_mutex_t tc_lock;
    tc_cache *tc_all;
    rl_stripe stripes[RL_STRIPES];
} auth;

static const char *const LOGIN_RESULT_LABELS[LOGIN_RESULTS] = {
    "result=\"success\"", "result=\"invalid_credentials\"", "result=\"rate_limited\""};
static const char *const TC_RESULT_LABELS[TC_RESULTS] = {"result=\"hit\"", "result=\"miss\""};
static const char *const UC_RESULT_LABELS[UC_RESULTS] = {
    "result=\"valid\"", "result=\"revoked\"", "result=\"error\""};

/* ---- rate limiting -------------------------------------------------------
 * Check and record are separate steps (the hash runs between them, unlocked),
 * so a burst of parallel attempts can overshoot login_max_failures by at
 * most the number of attempts in flight; the hasher's cap bounds that. */

static void rl_key(char *key, const char *client, const char *email)
{
    snprintf(key, RL_KEY_MAX, "%.*s\n%s", RL_CLIENT_MAX, client ? client : "", email);
}

static rl_stripe *rl_stripe_for(auth *a, const char *key)
{
    uint64_t h = 0xcbf29ce484222325ull ^ a->rl_seed; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 0x100000001b3ull;
    return &a->stripes[(h ^ (h >> 32)) % RL_STRIPES];
}

static int rl_expired(const auth *a, const rl_slot *s, int64_t now)
{
    return s->key[0] == '\0' || now - s->window_start_ms >= a->window_ms;
}

/* Caller holds the stripe lock. */
static rl_slot *rl_find(rl_stripe *st, const char *key)
{
    for (size_t i = 0; i < RL_SLOTS; i++)
        if (strcmp(st->slots[i].key, key) == 0)
            return &st->slots[i];
    return NULL;
}

/* A free or expired slot, else the one with the oldest window: memory stays
 * bounded and only the stalest record is forgotten. Caller holds the lock. */
static rl_slot *rl_victim(auth *a, rl_stripe *st, int64_t now)
{
    rl_slot *oldest = &st->slots[0];
    for (size_t i = 0; i < RL_SLOTS; i++) {
        if (rl_expired(a, &st->slots[i], now))
            return &st->slots[i];
        if (st->slots[i].window_start_ms < oldest->window_start_ms)
            oldest = &st->slots[i];
    }
    return oldest;
}

/* Seconds until key may try again, 0 if it may now. */
static int64_t rl_retry_after(auth *a, const char *key, int64_t now)
{
    rl_stripe *st = rl_stripe_for(a, key);
    int64_t wait_ms = 0;
    pthread_mutex_lock(&st->lock);
    rl_slot *s = rl_find(st, key);
    if (s != NULL && !rl_expired(a, s, now) && (int64_t)s->failures >= a->max_failures)
        wait_ms = s->window_start_ms + a->window_ms - now;
    pthread_mutex_unlock(&st->lock);
    return (wait_ms + 999) / 1000;
}

static void rl_fail(auth *a, const char *key, int64_t now)
{
    rl_stripe *st = rl_stripe_for(a, key);
    pthread_mutex_lock(&st->lock);
    rl_slot *s = rl_find(st, key);
    if (s == NULL || rl_expired(a, s, now)) {
        if (s == NULL)
            s = rl_victim(a, st, now);
        snprintf(s->key, sizeof s->key, "%s", key);
        s->failures = 0;
        s->window_start_ms = now;
    }
    s->failures++;
    pthread_mutex_unlock(&st->lock);
}

static void rl_reset(auth *a, const char *key)
{
    rl_stripe *st = rl_stripe_for(a, key);
    pthread_mutex_lock(&st->lock);
    rl_slot *s = rl_find(st, key);
    if (s != NULL)
        memset(s, 0, sizeof *s);
    pthread_mutex_unlock(&st->lock);
}

/* ---- tokens --------------------------------------------------------------- */

static const char *role_name(uint32_t role)
{
    return role == OD_ROLE_ADMIN ? "admin" : "customer";
}

static uint32_t role_parse(const char *s)
{
    if (s != NULL && strcmp(s, "admin") == 0)
        return OD_ROLE_ADMIN;
    if (s != NULL && strcmp(s, "customer") == 0)
        return OD_ROLE_CUSTOMER;
    return 0;
}

/* A signed token for the user, malloc'd by libjwt (free()), or NULL. */
static char *token_issue(const auth *a, const char *user_id, uint32_t role, int64_t tv,
                         int64_t now_s)
{
    jwt_t *j = NULL;
    char *token = NULL;
    if (jwt_new(&j) != 0)
        return NULL;
    if (jwt_add_grant(j, "sub", user_id) == 0 && jwt_add_grant(j, "role", role_name(role)) == 0 &&
        jwt_add_grant(j, "iss", a->issuer) == 0 && jwt_add_grant_int(j, "iat", (long)now_s) == 0 &&
        jwt_add_grant_int(j, "exp", (long)(now_s + a->ttl_s)) == 0 &&
        jwt_add_grant_int(j, "tv", (long)tv) == 0 &&
        jwt_set_alg(j, JWT_ALG_HS256, a->secret, (int)a->secret_len) == 0)
        token = jwt_encode_str(j);
    jwt_free(j);
    return token;
}

/* An integer claim; absent -> *present = 0. Any other type is invalid. */
static od_status claim_int(json_object *claims, const char *name, int64_t *out, int *present)
{
    json_object *v = NULL;
    *present = json_object_object_get_ex(claims, name, &v);
    if (!*present)
        return OD_OK;
    if (!json_object_is_type(v, json_type_int))
        return OD_ERR_INVALID;
    *out = json_object_get_int64(v);
    return OD_OK;
}

static const char *claim_string(json_object *claims, const char *name)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(claims, name, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* The registered claims, checked as libjwt 1.10 does not (LIBRARIES.md §2). */
static od_status claims_check(const auth *a, json_object *claims, int64_t now, od_principal *out,
                              int64_t *exp_out, int64_t *tv_out)
{
    int64_t exp = 0, iat = 0, nbf = 0, tv = 0;
    int has_exp = 0, has_iat = 0, has_nbf = 0, has_tv = 0;
    if (claim_int(claims, "exp", &exp, &has_exp) != OD_OK || !has_exp || exp <= now)
        return OD_ERR_INVALID;
    if (claim_int(claims, "iat", &iat, &has_iat) != OD_OK || !has_iat || iat > now + CLOCK_SKEW_S)
        return OD_ERR_INVALID;
    if (claim_int(claims, "nbf", &nbf, &has_nbf) != OD_OK || (has_nbf && nbf > now + CLOCK_SKEW_S))
        return OD_ERR_INVALID;
    /* Tokens from before revocation existed carry no tv: version 0. */
    if (claim_int(claims, "tv", &tv, &has_tv) != OD_OK || tv < 0)
        return OD_ERR_INVALID;
    const char *iss = claim_string(claims, "iss");
    const char *sub = claim_string(claims, "sub");
    uint32_t role = role_parse(claim_string(claims, "role"));
    if (iss == NULL || strcmp(iss, a->issuer) != 0 || role == 0)
        return OD_ERR_INVALID;
    size_t sub_len = sub ? strlen(sub) : 0;
    if (sub_len == 0 || sub_len > SUB_MAX)
        return OD_ERR_INVALID;
    out->role = role;
    memcpy(out->user_id, sub, sub_len + 1);
    *exp_out = exp;
    *tv_out = tv;
    return OD_OK;
}

/* tokenVersion of a user document: absent = 0; anything but an integer
 * >= 0 is a corrupt record. */
static od_status doc_token_version(json_object *doc, int64_t *tv)
{
    int present = 0;
    *tv = 0;
    if (claim_int(doc, "tokenVersion", tv, &present) != OD_OK || *tv < 0)
        return OD_ERR_INTERNAL;
    return OD_OK;
}

/* ---- revocation: the token against its user's document ------------------ */

/* Whether user_id still exists with tokenVersion tv. *st holds what the
 * last check saw (version 0 = nothing yet); an unchanged storage version
 * means an unchanged document, so its role stands without a parse. OD_OK
 * with *st updated; OD_ERR_INVALID for a revoked token, a missing user or
 * a corrupt record; OD_ERR_UNAVAILABLE when the storage failed. */
static od_status user_check(auth *a, const char *user_id, int64_t tv, user_state *st)
{
    od_doc doc = {0};
    od_status s = a->storage->ops->get(a->storage->self, "users", user_id, &doc);
    if (s == OD_OK && (st->version == 0 || doc.version != st->version)) {
        json_object *o = json_tokener_parse(doc.body);
        int64_t doc_tv = 0;
        uint32_t role = json_object_is_type(o, json_type_object)
                            ? role_parse(claim_string(o, "role")) : 0;
        if (role == 0 || doc_token_version(o, &doc_tv) != OD_OK) {
            a->host->log(a->mod, OD_LOG_ERROR, "user %s: unreadable record", doc.key);
            s = OD_ERR_INTERNAL;
        } else if (doc_tv != tv) {
            s = OD_ERR_NOT_FOUND;
        } else {
            st->version = doc.version;
            st->role = role;
        }
        json_object_put(o);
    }
    od_doc_clear(a->host, &doc);
    if (s == OD_OK) {
        a->host->metric_add(a->uc_results[UC_VALID], 1);
        return OD_OK;
    }
    if (s == OD_ERR_NOT_FOUND || s == OD_ERR_INTERNAL) {
        a->host->metric_add(a->uc_results[UC_REVOKED], 1);
        return OD_ERR_INVALID;
    }
    a->host->metric_add(a->uc_results[UC_ERROR], 1);
    return OD_ERR_UNAVAILABLE;
}

/* ---- verified-token cache ------------------------------------------------ */

static void tc_link(auth *a, tc_cache *c)
{
    pthread_mutex_lock(&a->tc_lock);
    c->next = a->tc_all;
    c->prev = NULL;
    if (a->tc_all != NULL)
        a->tc_all->prev = c;
    a->tc_all = c;
    pthread_mutex_unlock(&a->tc_lock);
}

static void tc_unlink(auth *a, tc_cache *c)
{
    pthread_mutex_lock(&a->tc_lock);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        a->tc_all = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    pthread_mutex_unlock(&a->tc_lock);
}

/* Thread exit (pthread key destructor). */
static void tc_thread_exit(void *p)
{
    tc_cache *c = p;
    auth *a = c->owner;
    tc_unlink(a, c);
    a->host->free(c);
}

/* This thread's cache, created on first use; NULL when that fails (the
 * caller then just verifies in full). */
static tc_cache *tc_get(auth *a)
{
    tc_cache *c = pthread_getspecific(a->tc_key);
    if (c != NULL)
        return c;
    c = a->host->calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->owner = a;
    if (pthread_setspecific(a->tc_key, c) != 0) {
        a->host->free(c);
        return NULL;
    }
    tc_link(a, c);
    return c;
}

static tc_entry *tc_slot(tc_cache *c, const char *token, size_t len)
{
    uint32_t h = 2166136261u; /* FNV-1a: only picks the slot */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)token[i]) * 16777619u;
    return &c->slots[h % TC_SLOTS];
}

/* A stale entry's user document is read again; a clock stepped back also
 * counts as stale, so it cannot stretch the interval. */
static int tc_stale(const auth *a, const tc_entry *e, int64_t now_ms)
{
    return now_ms - e->checked_ms >= a->recheck_ms || now_ms < e->checked_ms;
}

/* OD_OK with *out filled on a live hit; OD_ERR_INVALID for a cached token
 * that has expired or been revoked since; OD_ERR_UNAVAILABLE when its due
 * re-check could not read the storage; OD_ERR_NOT_FOUND when the token is
 * not cached. */
static od_status tc_lookup(auth *a, tc_cache *c, const char *token, size_t len, int64_t now_ms,
                           od_principal *out)
{
    tc_entry *e = tc_slot(c, token, len);
    if (e->exp == 0 || e->len != len || CRYPTO_memcmp(e->token, token, len) != 0)
        return OD_ERR_NOT_FOUND;
    if (e->exp <= now_ms / 1000) {
        e->exp = 0;
        return OD_ERR_INVALID;
    }
    if (tc_stale(a, e, now_ms)) {
        user_state st = {.version = e->doc_version, .role = e->role};
        od_status s = user_check(a, e->user_id, e->tv, &st);
        if (s == OD_ERR_INVALID)
            e->exp = 0;
        if (s != OD_OK)
            return s;
        e->doc_version = st.version;
        e->role = st.role;
        e->checked_ms = now_ms;
    }
    out->role = e->role;
    memcpy(out->user_id, e->user_id, sizeof e->user_id);
    return OD_OK;
}

static void tc_store(tc_cache *c, const char *token, size_t len, int64_t exp, int64_t tv,
                     const user_state *st, int64_t now_ms, const od_principal *p)
{
    tc_entry *e = tc_slot(c, token, len);
    memcpy(e->token, token, len);
    e->len = len;
    e->exp = exp;
    e->tv = tv;
    e->checked_ms = now_ms;
    e->doc_version = st->version;
    e->role = p->role;
    snprintf(e->user_id, sizeof e->user_id, "%s", p->user_id);
}

/* ---- verification ---------------------------------------------------------- */

/* The signature, algorithm and claims. *exp and *tv receive the token's
 * expiry and token version on success. */
static od_status verify_signed(const auth *a, char *token, int64_t now, od_principal *out,
                               int64_t *exp, int64_t *tv)
{
    jwt_t *j = NULL;
    if (jwt_decode(&j, token, a->secret, (int)a->secret_len) != 0)
        return OD_ERR_INVALID;
    /* libjwt takes the algorithm from the token header: pin it. */
    char *grants = jwt_get_alg(j) == JWT_ALG_HS256 ? jwt_get_grants_json(j, NULL) : NULL;
    jwt_free(j);
    if (grants == NULL)
        return OD_ERR_INVALID;
    json_object *claims = json_tokener_parse(grants);
    free(grants);
    od_status s = OD_ERR_INVALID;
    if (json_object_is_type(claims, json_type_object))
        s = claims_check(a, claims, now, out, exp, tv);
    json_object_put(claims);
    return s;
}

static od_status verify_token(void *self, const char *token, size_t len, od_principal *out)
{
    auth *a = self;
    char buf[TOKEN_MAX + 1];
    /* The cap also bounds libjwt's alloca() of each part on this stack. */
    if (len == 0 || len > TOKEN_MAX || memchr(token, '\0', len) != NULL)
        return OD_ERR_INVALID;
    int64_t now_ms = a->host->now_ms();
    tc_cache *cache = len <= TC_TOKEN_MAX ? tc_get(a) : NULL;
    if (cache != NULL) {
        od_status hit = tc_lookup(a, cache, token, len, now_ms, out);
        if (hit == OD_OK)
            a->host->metric_add(a->tc_results[TC_HIT], 1);
        if (hit != OD_ERR_NOT_FOUND)
            return hit;
    }
    a->host->metric_add(a->tc_results[TC_MISS], 1);
    memcpy(buf, token, len);
    buf[len] = '\0';
    int64_t exp = 0, tv = 0;
    user_state st = {0};
    od_status s = verify_signed(a, buf, now_ms / 1000, out, &exp, &tv);
    if (s == OD_OK)
        s = user_check(a, out->user_id, tv, &st);
    if (s != OD_OK)
        return s;
    out->role = st.role;
    if (cache != NULL)
        tc_store(cache, token, len, exp, tv, &st, now_ms, out);
    return OD_OK;
}

/* ---- login ---------------------------------------------------------------- */

typedef struct login_req {
    char email[ODM_EMAIL_MAX + 1];
    const char *password; /* borrowed from the body object */
    size_t password_len;
} login_req;

static const char *const LOGIN_FIELDS[] = {"email", "password", NULL};

static od_status login_parse(json_object *body, login_req *lr, odm_err *e)
{
    const char *email = NULL;
    if (odm_only_fields(body, LOGIN_FIELDS, e) != OD_OK ||
        odm_get_string(body, "email", 1, 1, ODM_EMAIL_MAX, &email, e) != OD_OK ||
        odm_get_string(body, "password", 1, 1, PASSWORD_MAX, &lr->password, e) != OD_OK)
        return OD_ERR_INVALID;
    if (odm_email_normalize(email, lr->email) != OD_OK) {
        odm_err_set(e, "field 'email' must be a valid email address");
        return OD_ERR_INVALID;
    }
    lr->password_len = strlen(lr->password);
    return OD_OK;
}

/* The user document's fields login needs, borrowed from *doc_obj. */
typedef struct user_view {
    const char *id, *name, *email, *hash;
    uint32_t role;
    int64_t tv;
} user_view;

static od_status user_view_parse(const od_doc *doc, json_object **doc_obj, user_view *u)
{
    *doc_obj = json_tokener_parse(doc->body);
    json_object *o = *doc_obj;
    if (!json_object_is_type(o, json_type_object))
        return OD_ERR_INTERNAL;
    u->id = claim_string(o, "id");
    u->name = claim_string(o, "name");
    u->email = claim_string(o, "email");
    u->hash = claim_string(o, "passwordHash");
    u->role = role_parse(claim_string(o, "role"));
    if (!u->id || !u->name || !u->email || !u->hash || u->role == 0)
        return OD_ERR_INTERNAL;
    return doc_token_version(o, &u->tv);
}

static od_status reply_token(auth *a, od_request *req, const user_view *u)
{
    char *token = token_issue(a, u->id, u->role, u->tv, a->host->now_ms() / 1000);
    if (token == NULL)
        return OD_ERR_INTERNAL;
    json_object *data = json_object_new_object();
    json_object *user = json_object_new_object();
    json_object_object_add(data, "accessToken", json_object_new_string(token));
    json_object_object_add(data, "tokenType", json_object_new_string("Bearer"));
    json_object_object_add(data, "expiresIn", json_object_new_int64(a->ttl_s));
    json_object_object_add(user, "id", json_object_new_string(u->id));
    json_object_object_add(user, "name", json_object_new_string(u->name));
    json_object_object_add(user, "email", json_object_new_string(u->email));
    json_object_object_add(user, "role", json_object_new_string(role_name(u->role)));
    json_object_object_add(data, "user", user);
    free(token);
    od_status s = odm_reply_json(a->host, req, 200, "Login successful", data);
    json_object_put(data);
    return s;
}

static od_status reply_rate_limited(auth *a, od_request *req, int64_t retry_s)
{
    char value[24];
    snprintf(value, sizeof value, "%lld", (long long)retry_s);
    a->host->metric_add(a->logins[LOGIN_LIMITED], 1);
    a->host->reply_header(req, "Retry-After", value);
    return a->host->reply_error(req, 429, "rate_limited",
                                "Too many failed logins; try again later");
}

static od_status reply_bad_credentials(auth *a, od_request *req, const char *key)
{
    rl_fail(a, key, a->host->now_ms());
    a->host->metric_add(a->logins[LOGIN_FAILURE], 1);
    return a->host->reply_error(req, 401, "invalid_credentials", INVALID_CREDENTIALS);
}

/* Verify against the stored user, or against a dummy hash when there is
 * none, so an unknown e-mail costs the same time as a wrong password. */
static od_status login_check(auth *a, od_request *req, const login_req *lr, const char *key)
{
    od_doc doc = {0};
    od_status s = a->storage->ops->lookup(a->storage->self, "users", "email", lr->email, &doc);
    if (s == OD_ERR_NOT_FOUND) {
        (void)odm_password_verify(a->hasher, a->dummy_hash, lr->password, lr->password_len);
        return reply_bad_credentials(a, req, key);
    }
    if (s != OD_OK)
        return odm_reply_status(a->host, req, s);

    json_object *obj = NULL;
    user_view u;
    s = user_view_parse(&doc, &obj, &u);
    if (s == OD_OK)
        s = odm_password_verify(a->hasher, u.hash, lr->password, lr->password_len);
    if (s == OD_OK) {
        rl_reset(a, key);
        a->host->metric_add(a->logins[LOGIN_SUCCESS], 1);
        s = reply_token(a, req, &u);
    } else if (s == OD_ERR_INVALID) {
        s = reply_bad_credentials(a, req, key);
    } else {
        a->host->log(a->mod, OD_LOG_ERROR, "user %s: unreadable record (%s)", doc.key,
                     od_status_str(s));
    }
    json_object_put(obj);
    od_doc_clear(a->host, &doc);
    return s;
}

static od_status handle_login(void *self, od_request *req)
{
    auth *a = self;
    json_object *body = odm_body_object(a->host, req);
    if (body == NULL)
        return OD_OK;
    login_req lr;
    odm_err e = {{0}};
    od_status s;
    if (login_parse(body, &lr, &e) != OD_OK) {
        s = odm_reply_invalid(a->host, req, &e);
    } else {
        char key[RL_KEY_MAX];
        rl_key(key, a->host->req_client(req), lr.email);
        int64_t retry_s = rl_retry_after(a, key, a->host->now_ms());
        s = retry_s > 0 ? reply_rate_limited(a, req, retry_s) : login_check(a, req, &lr, key);
    }
    json_object_put(body);
    return s;
}

/* ---- lifecycle ------------------------------------------------------------ */

static od_status load_secret(auth *a)
{
    const od_host_api *h = a->host;
    const char *secret = NULL;
    int dev = 0;
    if (h->config_string(a->mod, "jwt_secret", "", &secret) != OD_OK ||
        h->config_bool(a->mod, "generate_dev_secret", 0, &dev) != OD_OK)
        return OD_ERR_CONFIG;
    size_t len = strlen(secret);
    if (len == 0 && dev) {
        h->log(a->mod, OD_LOG_WARN,
               "generated a random JWT secret: tokens will not survive a restart "
               "(generate_dev_secret is for development only; set JWT_SECRET in production)");
        a->secret_len = DEV_SECRET_LEN;
        return h->random_bytes(a->secret, DEV_SECRET_LEN);
    }
    if (len < SECRET_MIN || len > SECRET_MAX) {
        h->log(a->mod, OD_LOG_ERROR,
               "auth.jwt_secret must be %d..%d bytes, got %zu: set JWT_SECRET "
               "(e.g. `openssl rand -base64 48`) or, for development only, "
               "auth.generate_dev_secret = true",
               SECRET_MIN, SECRET_MAX, len);
        return OD_ERR_CONFIG;
    }
    memcpy(a->secret, secret, len);
    a->secret_len = len;
    return OD_OK;
}

static od_status load_config(auth *a)
{
    const od_host_api *h = a->host;
    int64_t window_s = 0, t_cost = 0, m_kib = 0;
    if (load_secret(a) != OD_OK ||
        h->config_string(a->mod, "issuer", "orderd", &a->issuer) != OD_OK ||
        h->config_int(a->mod, "token_ttl_seconds", 3600, 60, 86400 * 30, &a->ttl_s) != OD_OK ||
        h->config_int(a->mod, "login_max_failures", 5, 1, 1000, &a->max_failures) != OD_OK ||
        h->config_int(a->mod, "login_window_seconds", 300, 1, 86400, &window_s) != OD_OK ||
        h->config_int(a->mod, "revocation_check_ms", 5000, 0, 3600000, &a->recheck_ms) != OD_OK ||
        h->config_int(a->mod, "argon2_iterations", ODM_ARGON2_T_DEFAULT, ODM_ARGON2_T_MIN, 64,
                      &t_cost) != OD_OK ||
        h->config_int(a->mod, "argon2_memory_kib", ODM_ARGON2_M_DEFAULT, ODM_ARGON2_M_MIN,
                      1024 * 1024, &m_kib) != OD_OK)
        return OD_ERR_CONFIG;
    a->window_ms = window_s * 1000;
    return odm_hasher_new(h, (uint32_t)t_cost, (uint32_t)m_kib, 0, &a->hasher);
}

/* The hash compared against when the e-mail is unknown; its password is
 * random and forgotten, so it can never match. */
static od_status make_dummy_hash(auth *a)
{
    unsigned char pw[32];
    od_status s = a->host->random_bytes(pw, sizeof pw);
    if (s == OD_OK)
        s = odm_password_hash(a->hasher, (const char *)pw, sizeof pw, a->dummy_hash);
    return s;
}

static od_status setup_storage(auth *a)
{
    static const od_index_def indexes[] = {{.name = "email", .unique = 1}};
    const od_table_def users = {.size = sizeof users, .name = "users", .indexes = indexes,
                                .n_indexes = 1};
    a->storage = a->host->storage(a->mod);
    if (a->storage == NULL) {
        a->host->log(a->mod, OD_LOG_ERROR, "no storage backend configured; auth needs one");
        return OD_ERR_CONFIG;
    }
    return a->storage->ops->define_table(a->storage->self, &users);
}

static od_status register_metrics(auth *a)
{
    for (size_t i = 0; i < LOGIN_RESULTS; i++) {
        a->logins[i] = a->host->metric(a->mod, OD_METRIC_COUNTER, "orderd_logins_total",
                                       "Login attempts by result", LOGIN_RESULT_LABELS[i]);
        if (a->logins[i] == NULL)
            return OD_ERR_NOMEM;
    }
    for (size_t i = 0; i < TC_RESULTS; i++) {
        a->tc_results[i] = a->host->metric(a->mod, OD_METRIC_COUNTER,
                                           "orderd_auth_token_cache_total",
                                           "Bearer-token checks answered by the per-thread "
                                           "cache (hit) or verified in full (miss)",
                                           TC_RESULT_LABELS[i]);
        if (a->tc_results[i] == NULL)
            return OD_ERR_NOMEM;
    }
    for (size_t i = 0; i < UC_RESULTS; i++) {
        a->uc_results[i] = a->host->metric(a->mod, OD_METRIC_COUNTER,
                                           "orderd_auth_user_checks_total",
                                           "Bearer tokens checked against their user's "
                                           "document: still valid, refused (password changed, "
                                           "user gone or unreadable) or not checkable "
                                           "(storage error)",
                                           UC_RESULT_LABELS[i]);
        if (a->uc_results[i] == NULL)
            return OD_ERR_NOMEM;
    }
    return OD_OK;
}

static od_status tc_setup(auth *a)
{
    if (pthread_key_create(&a->tc_key, tc_thread_exit) != 0)
        return OD_ERR_NOMEM;
    a->tc_key_ok = 1;
    return OD_OK;
}

/* Runs after every worker stopped (lifecycle): no cache is in use. Deleting
 * the key first means no thread-exit destructor can run any more. */
static void tc_teardown(auth *a)
{
    if (a->tc_key_ok)
        pthread_key_delete(a->tc_key);
    for (tc_cache *c = a->tc_all, *next; c != NULL; c = next) {
        next = c->next;
        a->host->free(c);
    }
    a->tc_all = NULL;
}

static void auth_free(auth *a)
{
    tc_teardown(a);
    pthread_mutex_destroy(&a->tc_lock);
    for (size_t i = 0; i < RL_STRIPES; i++)
        pthread_mutex_destroy(&a->stripes[i].lock);
    odm_hasher_free(a->hasher);
    /* The secret must not linger in freed memory. */
    memset(a->secret, 0, sizeof a->secret);
    a->host->free(a);
}

static od_status auth_init(const od_host_api *host, od_module *mod, void **self)
{
    auth *a = host->calloc(1, sizeof *a);
    if (a == NULL)
        return OD_ERR_NOMEM;
    a->host = host;
    a->mod = mod;
    for (size_t i = 0; i < RL_STRIPES; i++)
        pthread_mutex_init(&a->stripes[i].lock, NULL);
    pthread_mutex_init(&a->tc_lock, NULL);
    od_status s = load_config(a);
    if (s == OD_OK)
        s = tc_setup(a);
    if (s == OD_OK)
        s = host->random_bytes(&a->rl_seed, sizeof a->rl_seed);
    if (s == OD_OK)
        s = make_dummy_hash(a);
    if (s == OD_OK)
        s = setup_storage(a);
    if (s == OD_OK)
        s = register_metrics(a);
    if (s == OD_OK)
        s = host->route(mod, "POST", "/api/login", OD_ACCESS_PUBLIC, handle_login);
    if (s == OD_OK)
        s = host->set_authenticator(mod, verify_token);
    if (s != OD_OK) {
        auth_free(a);
        return s;
    }
    *self = a;
    return OD_OK;
}

static void auth_destroy(void *self)
{
    auth_free(self);
}

static const od_module_desc auth_desc = {
    OD_MODULE_HEADER(OD_KIND_SERVICE),
    .name = "auth",
    .version = "1.0.0",
    .description = "login and JWT (HS256) bearer-token verification",
    .init = auth_init,
    .destroy = auth_destroy,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &auth_desc;
}
