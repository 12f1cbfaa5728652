/*
 * users - user accounts: sign-up, profile, admin listing, admin bootstrap.
 *
 * Routes: POST /api/users (public sign-up), GET /api/users (admin, paged),
 * GET /api/users/me, PATCH /api/users/me, GET /api/users/:id (admin or the
 * user). Users live in the storage table "users", key = id (UUIDv7), with
 * the unique index "email" (lower-cased), documents
 * {"id","name","email","role","passwordHash","createdAt","updatedAt"} and,
 * once the password has been changed, "tokenVersion" (absent = 0).
 * Responses are built from a whitelist of fields, so the hash never leaves.
 *
 * Config group "users": admin_email, admin_password (>= 8 chars; both also
 * from ORDERD_ADMIN_EMAIL/_PASSWORD), admin_name ("Administrator"),
 * argon2_iterations (>= 1, 2), argon2_memory_kib (>= 1024, 19456).
 * Threads: none of its own; handlers run on HTTP workers and share only the
 * read-only config and the hasher (internally synchronised).
 *
 * GET /api/users/me and /:id keep, per HTTP worker thread, the rendered
 * public view of recently read documents (odm_view_cache): a read whose
 * stored bytes equal the cached source bytes replies with the cached view,
 * skipping json-c's parse (which takes glibc's global locale lock), the
 * whitelist copy and the serialisation. Any put changes the stored bytes'
 * version, so updates are visible at once; deletes fail the get first.
 *
 * PATCH /api/users/me: changing the password needs currentPassword (400
 * validation_failed when missing, 401 invalid_credentials when wrong) and
 * increments tokenVersion, which revokes every token issued before (the
 * auth module accepts a token only while its "tv" claim equals it); the
 * client logs in again with the new password. The write is conditional on
 * the version read, so two changes never reuse a tokenVersion; one retry on
 * a concurrent change, then 409 conflict.
 */
#include <stdint.h>
#include <string.h>

#include "odm.h"

#define TABLE "users"
#define NAME_MAX_CHARS 100
#define PASSWORD_MIN 8
#define PASSWORD_MAX 128
#define CURRENT_PASSWORD_MAX 1024
#define PATCH_ATTEMPTS 2
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

static const char *const PUBLIC_FIELDS[] = {"id",        "name",      "email", "role",
                                            "createdAt", "updatedAt", NULL};
static const char *const CREATE_FIELDS[] = {"name", "email", "password", NULL};
static const char *const PATCH_FIELDS[] = {"name", "password", "currentPassword", NULL};

typedef struct users {
    const od_host_api *host;
    od_module *mod;
    const od_storage *storage;
    /* Read-only after init. */
    const char *admin_email; /* normalized copy in admin_email_buf, or "" */
    const char *admin_password;
    const char *admin_name;
    char admin_email_buf[ODM_EMAIL_MAX + 1];
    odm_hasher *hasher; /* thread-safe */
    odm_view_cache *views; /* per-thread rendered views; lock-free lookups */
} users;

/* ---- documents ------------------------------------------------------------ */

static void obj_set_string(json_object *o, const char *key, const char *value)
{
    json_object_object_add(o, key, json_object_new_string(value));
}

static const char *obj_string(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* A new object with only the fields clients may see. */
static json_object *public_view(json_object *doc)
{
    json_object *out = json_object_new_object();
    for (size_t i = 0; PUBLIC_FIELDS[i] != NULL; i++) {
        json_object *v = NULL;
        if (json_object_object_get_ex(doc, PUBLIC_FIELDS[i], &v))
            json_object_object_add(out, PUBLIC_FIELDS[i], json_object_get(v));
    }
    return out;
}

/* tokenVersion: absent = 0; anything but an integer >= 0 is corrupt (-1). */
static int64_t token_version(json_object *o)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, "tokenVersion", &v))
        return 0;
    if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 0)
        return -1;
    return json_object_get_int64(v);
}

static json_object *doc_parse(const od_doc *doc)
{
    json_object *o = json_tokener_parse(doc->body);
    if (!json_object_is_type(o, json_type_object) || obj_string(o, "email") == NULL ||
        obj_string(o, "passwordHash") == NULL || token_version(o) < 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* Write doc under key with its email index value. */
static od_status doc_put(users *u, const char *key, json_object *doc, uint32_t cond,
                         uint64_t expected)
{
    size_t len = 0;
    const char *text = json_object_to_json_string_length(doc, JSON_FLAGS, &len);
    const od_index_value idx = {.index = "email", .value = obj_string(doc, "email")};
    if (text == NULL)
        return OD_ERR_NOMEM;
    return u->storage->ops->put(u->storage->self, TABLE, key, text, len, &idx, 1, cond, expected,
                                NULL);
}

/* Create a user; *out (may be NULL) receives the stored document. */
static od_status user_create(users *u, const char *name, const char *email, const char *password,
                             const char *role, json_object **out)
{
    char id[OD_UUID_STR_LEN + 1], now[ODM_TIME_LEN + 1], hash[ODM_HASH_MAX];
    od_status s = u->host->new_id(id);
    if (s == OD_OK)
        s = odm_password_hash(u->hasher, password, strlen(password), hash);
    if (s != OD_OK)
        return s;
    odm_iso8601(u->host->now_ms(), now);
    json_object *doc = json_object_new_object();
    obj_set_string(doc, "id", id);
    obj_set_string(doc, "name", name);
    obj_set_string(doc, "email", email);
    obj_set_string(doc, "role", role);
    obj_set_string(doc, "passwordHash", hash);
    obj_set_string(doc, "createdAt", now);
    obj_set_string(doc, "updatedAt", now);
    s = doc_put(u, id, doc, OD_PUT_IF_ABSENT, 0);
    if (s == OD_OK && out != NULL)
        *out = doc;
    else
        json_object_put(doc);
    return s;
}

static od_status reply_doc(users *u, od_request *req, int status, const char *message,
                           json_object *doc)
{
    json_object *view = public_view(doc);
    od_status s = odm_reply_json(u->host, req, status, message, view);
    json_object_put(view);
    return s;
}

/* Read the stored user `id`; replies itself (404 or the storage error) and
 * returns 0 when there is none. */
static int user_fetch(users *u, od_request *req, const char *id, od_doc *doc)
{
    od_status s = u->storage->ops->get(u->storage->self, TABLE, id, doc);
    if (s == OD_OK)
        return 1;
    if (s == OD_ERR_NOT_FOUND)
        u->host->reply_error(req, 404, "not_found", "User not found");
    else
        odm_reply_status(u->host, req, s);
    return 0;
}

static json_object *doc_parse_or_reply(users *u, od_request *req, const od_doc *doc)
{
    json_object *o = doc_parse(doc);
    if (o == NULL) {
        u->host->log(u->mod, OD_LOG_ERROR, "user %s: unreadable record", doc->key);
        u->host->reply_error(req, 500, "internal", "Internal error");
    }
    return o;
}

/* Load the user `id`; replies itself and returns NULL when there is none. */
static json_object *user_load(users *u, od_request *req, const char *id, uint64_t *version)
{
    od_doc doc = {0};
    if (!user_fetch(u, req, id, &doc))
        return NULL;
    json_object *o = doc_parse_or_reply(u, req, &doc);
    if (version != NULL)
        *version = doc.version;
    od_doc_clear(u->host, &doc);
    return o;
}

static void trim_copy(const char *s, char *out)
{
    size_t len = strlen(s);
    while (len > 0 && strchr(" \t\r\n", s[len - 1]) != NULL)
        len--;
    while (len > 0 && strchr(" \t\r\n", *s) != NULL) {
        s++;
        len--;
    }
    memcpy(out, s, len);
    out[len] = '\0';
}

/* Name: 1..100 characters, not blank, no control characters (it ends up in
 * e-mails and admin screens); trimmed into out[NAME_BUF]. */
#define NAME_BUF (NAME_MAX_CHARS * 4 + 1)
static od_status get_name(json_object *body, int required, char *out, int *given, odm_err *e)
{
    const char *name = NULL;
    if (odm_get_string(body, "name", required, 1, NAME_MAX_CHARS, &name, e) != OD_OK)
        return OD_ERR_INVALID;
    *given = name != NULL;
    if (name == NULL)
        return OD_OK;
    trim_copy(name, out);
    if (out[0] == '\0') {
        odm_err_set(e, "field 'name' must not be blank");
        return OD_ERR_INVALID;
    }
    for (const unsigned char *c = (const unsigned char *)out; *c; c++) {
        if (*c < 0x20 || *c == 0x7f) {
            odm_err_set(e, "field 'name' must not contain control characters");
            return OD_ERR_INVALID;
        }
    }
    return OD_OK;
}

/* ---- POST /api/users ------------------------------------------------------ */

typedef struct signup {
    char name[NAME_BUF];
    char email[ODM_EMAIL_MAX + 1];
    const char *password; /* borrowed from the body */
} signup;

static od_status signup_parse(json_object *body, signup *su, odm_err *e)
{
    const char *email = NULL;
    int given = 0;
    if (odm_only_fields(body, CREATE_FIELDS, e) != OD_OK ||
        get_name(body, 1, su->name, &given, e) != OD_OK ||
        odm_get_string(body, "email", 1, 1, ODM_EMAIL_MAX, &email, e) != OD_OK ||
        odm_get_string(body, "password", 1, PASSWORD_MIN, PASSWORD_MAX, &su->password, e) != OD_OK)
        return OD_ERR_INVALID;
    if (odm_email_normalize(email, su->email) != OD_OK) {
        odm_err_set(e, "field 'email' must be a valid email address");
        return OD_ERR_INVALID;
    }
    return OD_OK;
}

static od_status handle_create(void *self, od_request *req)
{
    users *u = self;
    json_object *body = odm_body_object(u->host, req);
    if (body == NULL)
        return OD_OK;
    signup su;
    odm_err e = {{0}};
    json_object *doc = NULL;
    od_status s = signup_parse(body, &su, &e);
    if (s != OD_OK) {
        s = odm_reply_invalid(u->host, req, &e);
    } else {
        s = user_create(u, su.name, su.email, su.password, "customer", &doc);
        if (s == OD_OK)
            s = reply_doc(u, req, 201, "User created", doc);
        else if (s == OD_ERR_EXISTS)
            s = u->host->reply_error(req, 409, "conflict", "A user with this email already exists");
        else
            s = odm_reply_status(u->host, req, s);
    }
    json_object_put(doc);
    json_object_put(body);
    return s;
}

/* ---- GET /api/users ------------------------------------------------------- */

static json_object *page_items(const od_page *page)
{
    json_object *items = json_object_new_array();
    for (size_t i = 0; i < page->count; i++) {
        json_object *doc = doc_parse(&page->items[i]);
        if (doc == NULL)
            continue; /* a corrupt record must not expose raw bytes */
        json_object_array_add(items, public_view(doc));
        json_object_put(doc);
    }
    return items;
}

static od_status handle_list(void *self, od_request *req)
{
    users *u = self;
    odm_page_req pr;
    odm_err e = {{0}};
    if (odm_page_params(u->host, req, &pr, &e) != OD_OK)
        return odm_reply_invalid(u->host, req, &e);
    od_page page = {0};
    od_status s = u->storage->ops->scan(u->storage->self, TABLE, pr.cursor, pr.limit, 0, &page);
    if (s == OD_ERR_INVALID) {
        odm_err_set(&e, "query parameter 'cursor' is not a valid cursor");
        return odm_reply_invalid(u->host, req, &e);
    }
    if (s != OD_OK)
        return odm_reply_status(u->host, req, s);
    json_object *items = page_items(&page);
    s = odm_reply_list(u->host, req, items, page.next);
    json_object_put(items);
    od_page_clear(u->host, &page);
    return s;
}

/* ---- GET /api/users/:id, GET /api/users/me -------------------------------- */

/* Reply 200 with the public view of a stored user: from this thread's
 * cache when it was rendered from the same bytes, else rendered with json-c
 * exactly like reply_doc() and remembered. */
static od_status reply_stored(users *u, od_request *req, const od_doc *doc)
{
    size_t len = 0;
    const char *text = odm_view_cache_find(u->views, doc, 0, &len);
    if (text != NULL)
        return u->host->reply(req, 200, "OK", text, len);
    json_object *o = doc_parse_or_reply(u, req, doc);
    if (o == NULL)
        return OD_OK;
    json_object *view = public_view(o);
    text = json_object_to_json_string_length(view, JSON_FLAGS, &len);
    od_status s = OD_ERR_NOMEM;
    if (text != NULL) {
        odm_view_cache_store(u->views, doc, 0, text, len);
        s = u->host->reply(req, 200, "OK", text, len);
    }
    json_object_put(view);
    json_object_put(o);
    return s;
}

static od_status reply_user(users *u, od_request *req, const char *id)
{
    od_doc doc = {0};
    if (!user_fetch(u, req, id, &doc))
        return OD_OK;
    od_status s = reply_stored(u, req, &doc);
    od_doc_clear(u->host, &doc);
    return s;
}

static od_status handle_get(void *self, od_request *req)
{
    users *u = self;
    const od_principal *p = u->host->req_principal(req);
    const char *id = u->host->req_param(req, "id");
    if (id == NULL || !odm_is_uuid(id))
        return u->host->reply_error(req, 404, "not_found", "User not found");
    if (p == NULL || (p->role != OD_ROLE_ADMIN && strcmp(id, p->user_id) != 0))
        return u->host->reply_error(req, 403, "forbidden", "You may only view your own account");
    return reply_user(u, req, id);
}

static od_status handle_me(void *self, od_request *req)
{
    users *u = self;
    const od_principal *p = u->host->req_principal(req);
    if (p == NULL)
        return u->host->reply_error(req, 401, "unauthorized", "Authentication required");
    return reply_user(u, req, p->user_id);
}

/* ---- PATCH /api/users/me -------------------------------------------------- */

typedef struct patch {
    char name[NAME_BUF];
    int has_name;
    const char *current; /* borrowed from the body; NULL unless changing the password */
    char new_hash[ODM_HASH_MAX];
    int has_password;
} patch;

static od_status patch_parse(users *u, json_object *body, patch *pt, odm_err *e)
{
    const char *password = NULL;
    if (odm_only_fields(body, PATCH_FIELDS, e) != OD_OK ||
        get_name(body, 0, pt->name, &pt->has_name, e) != OD_OK ||
        odm_get_string(body, "password", 0, PASSWORD_MIN, PASSWORD_MAX, &password, e) != OD_OK ||
        odm_get_string(body, "currentPassword", 0, 1, CURRENT_PASSWORD_MAX, &pt->current, e) !=
            OD_OK)
        return OD_ERR_INVALID;
    if (!pt->has_name && password == NULL) {
        odm_err_set(e, "nothing to update: give 'name' and/or 'password'");
        return OD_ERR_INVALID;
    }
    pt->has_password = password != NULL;
    if (pt->has_password && pt->current == NULL) {
        odm_err_set(e, "field 'currentPassword' is required to change the password");
        return OD_ERR_INVALID;
    }
    if (pt->has_password &&
        odm_password_hash(u->hasher, password, strlen(password), pt->new_hash) != OD_OK) {
        odm_err_set(e, "could not hash the password");
        return OD_ERR_INTERNAL;
    }
    return OD_OK;
}

/* One read-check-write round. OD_ERR_CONFLICT: the document changed since
 * it was read. OD_OK with *replied set when a reply was already sent. */
static od_status patch_apply(users *u, od_request *req, const char *id, const patch *pt,
                             int *replied)
{
    uint64_t version = 0;
    json_object *doc = user_load(u, req, id, &version);
    *replied = doc == NULL;
    if (doc == NULL)
        return OD_OK;
    od_status s = OD_OK;
    if (pt->has_password) {
        s = odm_password_verify(u->hasher, obj_string(doc, "passwordHash"), pt->current,
                                strlen(pt->current));
        if (s == OD_ERR_INVALID) {
            *replied = 1;
            s = u->host->reply_error(req, 401, "invalid_credentials",
                                     "Current password is incorrect");
            goto out;
        }
        if (s != OD_OK)
            goto out;
        obj_set_string(doc, "passwordHash", pt->new_hash);
        /* INT64_MAX changes would take longer than the universe has. */
        json_object_object_add(doc, "tokenVersion", json_object_new_int64(token_version(doc) + 1));
    }
    if (pt->has_name)
        obj_set_string(doc, "name", pt->name);
    char now[ODM_TIME_LEN + 1];
    odm_iso8601(u->host->now_ms(), now);
    obj_set_string(doc, "updatedAt", now);
    s = doc_put(u, id, doc, OD_PUT_IF_VERSION, version);
    if (s == OD_OK) {
        *replied = 1;
        s = reply_doc(u, req, 200,
                      pt->has_password ? "Password changed; log in again with the new password"
                                       : "User updated",
                      doc);
    }
out:
    json_object_put(doc);
    return s;
}

static od_status patch_run(users *u, od_request *req, const char *id, const patch *pt)
{
    od_status s = OD_ERR_CONFLICT;
    int replied = 0;
    for (int i = 0; i < PATCH_ATTEMPTS && s == OD_ERR_CONFLICT; i++)
        s = patch_apply(u, req, id, pt, &replied);
    if (replied)
        return s;
    if (s == OD_ERR_CONFLICT)
        return u->host->reply_error(req, 409, "conflict",
                                    "The account was changed concurrently; retry");
    return odm_reply_status(u->host, req, s);
}

static od_status handle_patch_me(void *self, od_request *req)
{
    users *u = self;
    const od_principal *p = u->host->req_principal(req);
    if (p == NULL)
        return u->host->reply_error(req, 401, "unauthorized", "Authentication required");
    json_object *body = odm_body_object(u->host, req);
    if (body == NULL)
        return OD_OK;
    patch pt = {0};
    odm_err e = {{0}};
    od_status s = patch_parse(u, body, &pt, &e);
    if (s == OD_ERR_INVALID)
        s = odm_reply_invalid(u->host, req, &e);
    else if (s == OD_OK)
        s = patch_run(u, req, p->user_id, &pt);
    json_object_put(body);
    return s;
}

/* ---- lifecycle ------------------------------------------------------------ */

static od_status load_admin_config(users *u)
{
    const od_host_api *h = u->host;
    const char *email = NULL;
    if (h->config_string(u->mod, "admin_email", "", &email) != OD_OK ||
        h->config_string(u->mod, "admin_password", "", &u->admin_password) != OD_OK ||
        h->config_string(u->mod, "admin_name", "Administrator", &u->admin_name) != OD_OK)
        return OD_ERR_CONFIG;
    u->admin_email = "";
    if (email[0] == '\0')
        return OD_OK;
    if (odm_email_normalize(email, u->admin_email_buf) != OD_OK) {
        h->log(u->mod, OD_LOG_ERROR, "users.admin_email (ORDERD_ADMIN_EMAIL) is not a valid email");
        return OD_ERR_CONFIG;
    }
    size_t pw_chars = odm_utf8_len(u->admin_password, strlen(u->admin_password));
    if (pw_chars < PASSWORD_MIN || pw_chars > PASSWORD_MAX) {
        h->log(u->mod, OD_LOG_ERROR,
               "users.admin_email is set, so users.admin_password (ORDERD_ADMIN_PASSWORD) "
               "must be %d..%d characters",
               PASSWORD_MIN, PASSWORD_MAX);
        return OD_ERR_CONFIG;
    }
    size_t name_chars = odm_utf8_len(u->admin_name, strlen(u->admin_name));
    if (name_chars < 1 || name_chars > NAME_MAX_CHARS) {
        h->log(u->mod, OD_LOG_ERROR, "users.admin_name must be 1..%d characters", NAME_MAX_CHARS);
        return OD_ERR_CONFIG;
    }
    u->admin_email = u->admin_email_buf;
    return OD_OK;
}

static od_status load_config(users *u)
{
    int64_t t_cost = 0, m_kib = 0;
    if (load_admin_config(u) != OD_OK ||
        u->host->config_int(u->mod, "argon2_iterations", ODM_ARGON2_T_DEFAULT, ODM_ARGON2_T_MIN,
                            64, &t_cost) != OD_OK ||
        u->host->config_int(u->mod, "argon2_memory_kib", ODM_ARGON2_M_DEFAULT, ODM_ARGON2_M_MIN,
                            1024 * 1024, &m_kib) != OD_OK)
        return OD_ERR_CONFIG;
    return odm_hasher_new(u->host, (uint32_t)t_cost, (uint32_t)m_kib, 0, &u->hasher);
}

static od_status setup_storage(users *u)
{
    static const od_index_def indexes[] = {{.name = "email", .unique = 1}};
    const od_table_def def = {.size = sizeof def, .name = TABLE, .indexes = indexes,
                              .n_indexes = 1};
    u->storage = u->host->storage(u->mod);
    if (u->storage == NULL) {
        u->host->log(u->mod, OD_LOG_ERROR, "no storage backend configured; users needs one");
        return OD_ERR_CONFIG;
    }
    return u->storage->ops->define_table(u->storage->self, &def);
}

static od_status register_routes(users *u)
{
    static const struct {
        const char *method, *pattern;
        uint32_t access;
        od_handler_fn fn;
    } routes[] = {
        {"POST", "/api/users", OD_ACCESS_PUBLIC, handle_create},
        {"GET", "/api/users", OD_ACCESS_ADMIN, handle_list},
        {"GET", "/api/users/me", OD_ACCESS_USER, handle_me},
        {"PATCH", "/api/users/me", OD_ACCESS_USER, handle_patch_me},
        {"GET", "/api/users/:id", OD_ACCESS_USER, handle_get},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        od_status s = u->host->route(u->mod, routes[i].method, routes[i].pattern,
                                     routes[i].access, routes[i].fn);
        if (s != OD_OK)
            return s;
    }
    return OD_OK;
}

static void users_free(users *u)
{
    odm_view_cache_free(u->views);
    odm_hasher_free(u->hasher);
    u->host->free(u);
}

static od_status users_init(const od_host_api *host, od_module *mod, void **self)
{
    users *u = host->calloc(1, sizeof *u);
    if (u == NULL)
        return OD_ERR_NOMEM;
    u->host = host;
    u->mod = mod;
    od_status s = odm_view_cache_new(host, &u->views);
    if (s == OD_OK)
        s = load_config(u);
    if (s == OD_OK)
        s = setup_storage(u);
    if (s == OD_OK)
        s = register_routes(u);
    if (s != OD_OK) {
        users_free(u);
        return s;
    }
    *self = u;
    return OD_OK;
}

/* Create the configured admin unless a user with that e-mail exists. */
static od_status users_start(void *self)
{
    users *u = self;
    if (u->admin_email[0] == '\0')
        return OD_OK;
    od_doc doc = {0};
    od_status s = u->storage->ops->lookup(u->storage->self, TABLE, "email", u->admin_email, &doc);
    if (s == OD_OK) {
        json_object *o = doc_parse(&doc);
        const char *role = o ? obj_string(o, "role") : NULL;
        if (role == NULL || strcmp(role, "admin") != 0)
            u->host->log(u->mod, OD_LOG_WARN, "admin account %s exists but is not an admin",
                         u->admin_email);
        json_object_put(o);
        od_doc_clear(u->host, &doc);
        return OD_OK;
    }
    if (s != OD_ERR_NOT_FOUND)
        return s;
    s = user_create(u, u->admin_name, u->admin_email, u->admin_password, "admin", NULL);
    if (s == OD_OK)
        u->host->log(u->mod, OD_LOG_INFO, "created admin account %s", u->admin_email);
    else if (s == OD_ERR_EXISTS) /* created concurrently by another instance */
        s = OD_OK;
    else
        u->host->log(u->mod, OD_LOG_ERROR, "could not create admin account %s: %s",
                     u->admin_email, od_status_str(s));
    return s;
}

static void users_destroy(void *self)
{
    users_free(self);
}

static const od_module_desc users_desc = {
    OD_MODULE_HEADER(OD_KIND_SERVICE),
    .name = "users",
    .version = "1.0.0",
    .description = "user accounts: sign-up, profile, admin listing",
    .init = users_init,
    .start = users_start,
    .destroy = users_destroy,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &users_desc;
}
