/*
 * odm_password.c - Argon2id password hashing (libargon2, PHC strings).
 *
 * Each hash or verify allocates m_kib of memory for its duration, so the
 * number running at once is capped by a counting semaphore: with 19 MiB per
 * hash and 50 HTTP workers, an unbounded login burst would need ~1 GiB.
 * Callers beyond the cap wait (the work is short, tens of milliseconds).
 */
#include "odm.h"

#include <errno.h>
#include <semaphore.h>
#include <string.h>
#include <unistd.h>

#include <argon2.h>

#define SALT_LEN 16
#define HASH_LEN 32
#define PARALLELISM 1

struct odm_hasher {
    const od_host_api *host;
    uint32_t t_cost;
    uint32_t m_kib;
    sem_t slots; /* free hashing slots; the only mutable state, thread-safe */
};

static uint32_t default_parallel(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (cpus < 1)
        cpus = 1;
    if (cpus > 256)
        cpus = 256;
    return (uint32_t)cpus * 2;
}

od_status odm_hasher_new(const od_host_api *h, uint32_t t_cost, uint32_t m_kib,
                         uint32_t max_parallel, odm_hasher **out)
{
    if (t_cost < ODM_ARGON2_T_MIN || m_kib < ODM_ARGON2_M_MIN)
        return OD_ERR_INVALID;
    odm_hasher *hs = h->calloc(1, sizeof *hs);
    if (hs == NULL)
        return OD_ERR_NOMEM;
    hs->host = h;
    hs->t_cost = t_cost;
    hs->m_kib = m_kib;
    if (sem_init(&hs->slots, 0, max_parallel ? max_parallel : default_parallel()) != 0) {
        h->free(hs);
        return OD_ERR_INTERNAL;
    }
    *out = hs;
    return OD_OK;
}

void odm_hasher_free(odm_hasher *hs)
{
    if (hs == NULL)
        return;
    sem_destroy(&hs->slots);
    hs->host->free(hs);
}

static void slot_take(odm_hasher *hs)
{
    while (sem_wait(&hs->slots) != 0 && errno == EINTR)
        ;
}

static void slot_give(odm_hasher *hs)
{
    sem_post(&hs->slots);
}

od_status odm_password_hash(odm_hasher *hs, const char *pw, size_t len, char *out)
{
    unsigned char salt[SALT_LEN];
    if (argon2_encodedlen(hs->t_cost, hs->m_kib, PARALLELISM, SALT_LEN, HASH_LEN, Argon2_id) >
        ODM_HASH_MAX)
        return OD_ERR_INVALID;
    od_status s = hs->host->random_bytes(salt, sizeof salt);
    if (s != OD_OK)
        return s;
    slot_take(hs);
    int rc = argon2id_hash_encoded(hs->t_cost, hs->m_kib, PARALLELISM, pw, len, salt, SALT_LEN,
                                   HASH_LEN, out, ODM_HASH_MAX);
    slot_give(hs);
    if (rc == ARGON2_MEMORY_ALLOCATION_ERROR)
        return OD_ERR_NOMEM;
    return rc == ARGON2_OK ? OD_OK : OD_ERR_INTERNAL;
}

od_status odm_password_verify(odm_hasher *hs, const char *encoded, const char *pw, size_t len)
{
    /* Only the kind of PHC string we write: a record of another algorithm
     * is corruption, not a password mismatch. */
    if (strncmp(encoded, "$argon2id$", 10) != 0 || strlen(encoded) >= ODM_HASH_MAX)
        return OD_ERR_INTERNAL;
    slot_take(hs);
    int rc = argon2id_verify(encoded, pw, len);
    slot_give(hs);
    if (rc == ARGON2_OK)
        return OD_OK;
    if (rc == ARGON2_VERIFY_MISMATCH)
        return OD_ERR_INVALID;
    return rc == ARGON2_MEMORY_ALLOCATION_ERROR ? OD_ERR_NOMEM : OD_ERR_INTERNAL;
}
