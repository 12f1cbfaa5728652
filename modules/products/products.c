/*
 * products - the product catalogue and its inventory (OD_KIND_SERVICE).
 *
 * Serves /api/products: a public paginated list, reads by id (also under the
 * old system's /api/products/id/:id) and by exact name for signed-in users,
 * and create/replace/patch/delete for admins. A product is a document in
 * table `products` (unique index `name`) plus a counter in table `stock`
 * under the same id (docs/data-model.md; a name longer than a storage index
 * value is indexed by its SHA-256, see name_index_value). `stock` in the API is the absolute
 * number of units on hand: an admin who sends it overwrites the counter,
 * whatever reservations happened meanwhile. Money is integer cents inside;
 * `price` is parsed from the JSON number's text (never through a double) and
 * written back from the integer, so 0.1 stays 0.1.
 * Config (group `products`): `update_attempts` (int, 1..100, default 5), how
 * often a replace/patch/delete re-reads and retries when the document changed
 * between its read and its conditional write.
 * Threads: none of its own. Handlers run on many HTTP workers at once; the
 * module state is read-only after init, and every json-c object lives only
 * inside one handler call.
 *
 * Reads of one product (by id or name) keep, per HTTP worker thread, the
 * rendered API view keyed by the document's key, version, exact stored bytes
 * and the stock just read (odm_view_cache): a hit skips json-c's parse
 * (which takes glibc's global locale lock), the build and the serialisation.
 * A put changes the stored bytes' version and a stock change the counter, so
 * neither is ever served stale; a deleted product fails the get first.
 */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>
#include <openssl/evp.h>

#include "odm.h"

#define PRODUCTS_TABLE "products"
#define STOCK_TABLE "stock"
#define NAME_INDEX "name"

#define NAME_MAX_CHARS 200
#define DESCRIPTION_MAX_CHARS 2000
#define PRICE_MAX_CENTS 1000000000000LL /* 10^12 */
#define PRICE_MAX_DIGITS 13             /* digits of PRICE_MAX_CENTS */
#define STOCK_MAX 1000000000LL
#define PRICE_TEXT_MAX 64
#define EXPONENT_CAP 100000 /* beyond this every exponent means the same verdict */
#define JSON_FLAGS (JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE)

/* A storage index value is at most OD_KEY_MAX bytes, but 200 characters of
 * UTF-8 may need 800. Longer names (and names that start with the prefix,
 * so the mapping stays one-to-one) are indexed by "sha256:<hex>". */
#define NAME_HASH_PREFIX "sha256:"
#define NAME_HASH_PREFIX_LEN (sizeof NAME_HASH_PREFIX - 1)
#define NAME_INDEX_VALUE_MAX OD_KEY_MAX

typedef struct products {
    const od_host_api *h;
    od_module *mod;
    const od_storage *st;
    int64_t update_attempts;
    odm_view_cache *views; /* per-thread rendered views; lock-free lookups */
} products;

/* One product while a request handles it. name and description are
 * borrowed from a json object or the request arena the caller keeps alive. */
typedef struct product {
    char id[OD_ID_MAX];
    const char *name;
    const char *description;
    int64_t price_cents;
    int64_t stock;
    char created_at[ODM_TIME_LEN + 1];
    char updated_at[ODM_TIME_LEN + 1];
} product;

/* The fields a client sent; NULL / -1 = not given. */
typedef struct product_input {
    const char *name; /* trimmed copy in the request arena */
    const char *description;
    int64_t price_cents;
    int64_t stock;
} product_input;

static const char *const INPUT_FIELDS[] = {"name", "description", "price", "stock", NULL};

static const od_index_def PRODUCT_INDEXES[] = {{NAME_INDEX, 1}};

static const od_table_def PRODUCTS_DEF = {
    .size = sizeof(od_table_def),
    .name = PRODUCTS_TABLE,
    .indexes = PRODUCT_INDEXES,
    .n_indexes = 1,
};

/* ---- money ---------------------------------------------------------------- */

/* A JSON number's text split into its digits and a power of ten:
 * value = digits * 10^exp10. "19.99" -> "1999", -2; "1.5E1" -> "15", 0. */
typedef struct decimal {
    char digits[PRICE_TEXT_MAX];
    size_t n;
    long exp10;
} decimal;

static od_status decimal_parse(const char *s, decimal *d)
{
    long frac = 0, exp = 0;
    int in_frac = 0, exp_neg = 0;
    d->n = 0;
    for (; (*s >= '0' && *s <= '9') || (*s == '.' && !in_frac); s++) {
        if (*s == '.') {
            in_frac = 1;
            continue;
        }
        if (d->n == sizeof d->digits)
            return OD_ERR_INVALID;
        d->digits[d->n++] = *s;
        frac += in_frac;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-')
            exp_neg = *s++ == '-';
        if (*s < '0' || *s > '9')
            return OD_ERR_INVALID;
        /* Saturate: past the cap every exponent gives the same verdict. */
        for (; *s >= '0' && *s <= '9'; s++)
            exp = exp < EXPONENT_CAP ? exp * 10 + (*s - '0') : EXPONENT_CAP;
    }
    if (*s != '\0' || d->n == 0)
        return OD_ERR_INVALID;
    d->exp10 = (exp_neg ? -exp : exp) - frac;
    return OD_OK;
}

/* Decimal text ("19.99", "1999e-2", "0.10", "20") to cents, exactly: digits
 * are shifted, never divided. A sign, more than two significant decimals or
 * more than PRICE_MAX_CENTS is refused. */
static od_status cents_from_text(const char *text, int64_t *cents, odm_err *e)
{
    decimal d;
    if (text[0] == '-') {
        odm_err_set(e, "field 'price' must not be negative");
        return OD_ERR_INVALID;
    }
    if (decimal_parse(text, &d) != OD_OK) {
        odm_err_set(e, "field 'price' must be a plain decimal number");
        return OD_ERR_INVALID;
    }
    size_t lead = 0, end = d.n;
    while (lead < d.n && d.digits[lead] == '0')
        lead++;
    *cents = 0;
    if (lead == d.n)
        return OD_OK; /* zero, whatever the exponent */

    long shift = d.exp10 + 2; /* cents = digits * 10^shift */
    for (; shift < 0; shift++, end--) {
        if (d.digits[end - 1] != '0') {
            odm_err_set(e, "field 'price' must have at most 2 decimals");
            return OD_ERR_INVALID;
        }
    }
    int64_t v = 0; /* stays 0 when there are too many digits to fit */
    if ((long)(end - lead) + shift <= PRICE_MAX_DIGITS) {
        for (size_t i = lead; i < end; i++)
            v = v * 10 + (d.digits[i] - '0');
        for (; shift > 0; shift--)
            v *= 10;
    }
    if (v == 0 || v > PRICE_MAX_CENTS) {
        odm_err_set(e, "field 'price' must be at most %lld", PRICE_MAX_CENTS / 100);
        return OD_ERR_INVALID;
    }
    *cents = v;
    return OD_OK;
}

/* The price member: a JSON number (integer or decimal), read from its text.
 * json-c keeps the original text of a decimal and prints it back verbatim. */
static od_status price_field(json_object *body, int required, int64_t *cents, odm_err *e)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(body, "price", &v) || v == NULL) {
        if (!required)
            return OD_OK;
        odm_err_set(e, "field 'price' is required");
        return OD_ERR_INVALID;
    }
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double)) {
        odm_err_set(e, "field 'price' must be a number");
        return OD_ERR_INVALID;
    }
    const char *text = json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN);
    if (text == NULL)
        return OD_ERR_NOMEM;
    return cents_from_text(text, cents, e);
}

/* 1999 -> 19.99, 1990 -> 19.9, 1900 -> 19, 5 -> 0.05: a number whose text is
 * written from the integer, so no binary rounding reaches the client. */
static json_object *price_json(int64_t cents)
{
    char text[32];
    long long units = (long long)(cents / 100), rest = (long long)(cents % 100);
    if (rest == 0)
        snprintf(text, sizeof text, "%lld", units);
    else if (rest % 10 == 0)
        snprintf(text, sizeof text, "%lld.%lld", units, rest / 10);
    else
        snprintf(text, sizeof text, "%lld.%02lld", units, rest);
    return json_object_new_double_s((double)cents / 100.0, text);
}

/* ---- names ------------------------------------------------------------------ */

static int is_ascii_space(char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Trim ASCII white space, then demand 1..NAME_MAX_CHARS characters of valid
 * UTF-8 without control characters. *out: a copy in the request arena. */
static od_status name_normalize(products *p, od_request *req, const char *raw, const char **out,
                                odm_err *e)
{
    size_t len = strlen(raw);
    while (len > 0 && is_ascii_space(raw[0]))
        raw++, len--;
    while (len > 0 && is_ascii_space(raw[len - 1]))
        len--;
    size_t chars = odm_utf8_len(raw, len);
    if (chars == SIZE_MAX) {
        odm_err_set(e, "field 'name' must be valid UTF-8");
        return OD_ERR_INVALID;
    }
    if (chars == 0 || chars > NAME_MAX_CHARS) {
        odm_err_set(e, "field 'name' must have 1 to %d characters (after trimming spaces)",
                    NAME_MAX_CHARS);
        return OD_ERR_INVALID;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)raw[i] < 0x20 || raw[i] == 0x7f) {
            odm_err_set(e, "field 'name' must not contain control characters");
            return OD_ERR_INVALID;
        }
    }
    char *copy = p->h->req_alloc(req, len + 1);
    if (copy == NULL)
        return OD_ERR_NOMEM;
    memcpy(copy, raw, len);
    copy[len] = '\0';
    *out = copy;
    return OD_OK;
}

/* The value of the unique `name` index for a name, into out[NAME_INDEX_VALUE_MAX + 1]. */
static od_status name_index_value(const char *name, char *out)
{
    size_t len = strlen(name);
    if (len <= NAME_INDEX_VALUE_MAX && strncmp(name, NAME_HASH_PREFIX, NAME_HASH_PREFIX_LEN) != 0) {
        memcpy(out, name, len + 1);
        return OD_OK;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(name, len, md, &md_len, EVP_sha256(), NULL) != 1)
        return OD_ERR_INTERNAL;
    static const char hex[] = "0123456789abcdef";
    char *o = out + NAME_HASH_PREFIX_LEN;
    memcpy(out, NAME_HASH_PREFIX, NAME_HASH_PREFIX_LEN);
    for (unsigned int i = 0; i < md_len; i++) {
        *o++ = hex[md[i] >> 4];
        *o++ = hex[md[i] & 15];
    }
    *o = '\0';
    return OD_OK;
}

/* ---- client input ----------------------------------------------------------- */

/* full: PUT/POST semantics (name, price and stock required). OD_ERR_INVALID
 * with e set for a client mistake; OD_ERR_NOMEM otherwise. */
static od_status input_parse(products *p, od_request *req, json_object *body, int full,
                             product_input *in, odm_err *e)
{
    const char *raw_name = NULL;
    *in = (product_input){.price_cents = -1, .stock = -1};

    od_status s = odm_only_fields(body, INPUT_FIELDS, e);
    if (s == OD_OK)
        s = odm_get_string(body, "name", full, 0, SIZE_MAX - 1, &raw_name, e);
    if (s == OD_OK && raw_name != NULL)
        s = name_normalize(p, req, raw_name, &in->name, e);
    if (s == OD_OK)
        s = price_field(body, full, &in->price_cents, e);
    if (s == OD_OK)
        s = odm_get_int(body, "stock", full, 0, STOCK_MAX, &in->stock, e);
    if (s == OD_OK)
        s = odm_get_string(body, "description", 0, 0, DESCRIPTION_MAX_CHARS, &in->description, e);
    return s;
}

static int input_empty(const product_input *in)
{
    return !in->name && !in->description && in->price_cents < 0 && in->stock < 0;
}

/* Apply what the client sent; a full replacement resets an absent description. */
static void input_apply(const product_input *in, int full, product *pr, int64_t now_ms)
{
    if (in->name)
        pr->name = in->name;
    if (in->description)
        pr->description = in->description;
    else if (full)
        pr->description = "";
    if (in->price_cents >= 0)
        pr->price_cents = in->price_cents;
    if (in->stock >= 0)
        pr->stock = in->stock;
    odm_iso8601(now_ms, pr->updated_at);
}

/* ---- stored documents ------------------------------------------------------ */

static const char *string_member(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

static int copy_member(json_object *o, const char *key, char *out, size_t cap)
{
    const char *v = string_member(o, key);
    return v != NULL && (size_t)snprintf(out, cap, "%s", v) < cap;
}

/* Parse a stored product. *holder owns the json the strings of pr point into
 * (the caller puts it); left NULL on failure. */
static od_status product_decode(products *p, const od_doc *doc, json_object **holder, product *pr)
{
    json_object *o = json_tokener_parse(doc->body);
    json_object *cents = NULL;
    *holder = NULL;
    *pr = (product){.stock = 0};
    if (o != NULL && json_object_is_type(o, json_type_object) &&
        copy_member(o, "id", pr->id, sizeof pr->id) &&
        (pr->name = string_member(o, "name")) != NULL &&
        copy_member(o, "createdAt", pr->created_at, sizeof pr->created_at) &&
        copy_member(o, "updatedAt", pr->updated_at, sizeof pr->updated_at) &&
        json_object_object_get_ex(o, "priceCents", &cents) &&
        json_object_is_type(cents, json_type_int)) {
        pr->price_cents = json_object_get_int64(cents);
        pr->description = string_member(o, "description");
        if (pr->description == NULL)
            pr->description = "";
        if (pr->price_cents >= 0) {
            *holder = o;
            return OD_OK;
        }
    }
    p->h->log(p->mod, OD_LOG_ERROR, "%s/%s: stored document is not a product", PRODUCTS_TABLE,
              doc->key);
    json_object_put(o);
    return OD_ERR_INTERNAL;
}

/* Add v under key; 0 or -1 (v NULL after an allocation failure, or add failed). */
static int add_member(json_object *o, const char *key, json_object *v)
{
    if (v == NULL)
        return -1;
    if (json_object_object_add(o, key, v) != 0) {
        json_object_put(v);
        return -1;
    }
    return 0;
}

static json_object *finish_object(json_object *o, int failed)
{
    if (failed) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

/* The document shape of docs/data-model.md. */
static json_object *product_doc_json(const product *pr)
{
    json_object *o = json_object_new_object();
    if (o == NULL)
        return NULL;
    int failed = add_member(o, "id", json_object_new_string(pr->id)) |
                 add_member(o, "name", json_object_new_string(pr->name)) |
                 add_member(o, "description", json_object_new_string(pr->description)) |
                 add_member(o, "priceCents", json_object_new_int64(pr->price_cents)) |
                 add_member(o, "createdAt", json_object_new_string(pr->created_at)) |
                 add_member(o, "updatedAt", json_object_new_string(pr->updated_at));
    return finish_object(o, failed);
}

/* The API shape: money as `price`, inventory as `stock`. */
static json_object *product_api_json(const product *pr)
{
    json_object *o = json_object_new_object();
    if (o == NULL)
        return NULL;
    int failed = add_member(o, "id", json_object_new_string(pr->id)) |
                 add_member(o, "name", json_object_new_string(pr->name)) |
                 add_member(o, "description", json_object_new_string(pr->description)) |
                 add_member(o, "price", price_json(pr->price_cents)) |
                 add_member(o, "stock", json_object_new_int64(pr->stock)) |
                 add_member(o, "createdAt", json_object_new_string(pr->created_at)) |
                 add_member(o, "updatedAt", json_object_new_string(pr->updated_at));
    return finish_object(o, failed);
}

/* ---- storage ---------------------------------------------------------------- */

/* Write the document with its name index value under a put condition. */
static od_status product_store(products *p, const product *pr, uint32_t cond, uint64_t expected)
{
    char name_value[NAME_INDEX_VALUE_MAX + 1];
    od_status s = name_index_value(pr->name, name_value);
    if (s != OD_OK)
        return s;
    json_object *doc = product_doc_json(pr);
    if (doc == NULL)
        return OD_ERR_NOMEM;
    size_t len = 0;
    const char *text = json_object_to_json_string_length(doc, JSON_FLAGS, &len);
    od_index_value idx = {NAME_INDEX, name_value};
    s = text == NULL ? OD_ERR_NOMEM
                     : p->st->ops->put(p->st->self, PRODUCTS_TABLE, pr->id, text, len, &idx, 1,
                                       cond, expected, NULL);
    json_object_put(doc);
    return s;
}

/* A missing counter reads as 0: the product was deleted between the two
 * reads, and an empty shelf is the truthful answer for that moment. */
static od_status stock_read(products *p, const char *id, int64_t *stock)
{
    od_status s = p->st->ops->counter_get(p->st->self, STOCK_TABLE, id, stock);
    if (s == OD_ERR_NOT_FOUND) {
        *stock = 0;
        return OD_OK;
    }
    return s;
}

/* Decode a stored document, add its stock and render the API object. */
static od_status product_view(products *p, const od_doc *doc, json_object **out)
{
    json_object *holder = NULL;
    product pr;
    od_status s = product_decode(p, doc, &holder, &pr);
    if (s == OD_OK)
        s = stock_read(p, pr.id, &pr.stock);
    if (s == OD_OK) {
        *out = product_api_json(&pr);
        s = *out != NULL ? OD_OK : OD_ERR_NOMEM;
    }
    json_object_put(holder);
    return s;
}

/* The counter first: until the document exists nobody can see the id, so
 * a reader never finds a product without its stock. */
static od_status product_create(products *p, const product *pr)
{
    const od_storage *st = p->st;
    od_status s = st->ops->counter_set(st->self, STOCK_TABLE, pr->id, pr->stock);
    if (s != OD_OK)
        return s;
    s = product_store(p, pr, OD_PUT_IF_ABSENT, 0);
    if (s != OD_OK) {
        od_status d = st->ops->counter_del(st->self, STOCK_TABLE, pr->id);
        if (d != OD_OK && d != OD_ERR_NOT_FOUND)
            p->h->log(p->mod, OD_LOG_WARN, "%s/%s: orphan counter left behind (%s)", STOCK_TABLE,
                      pr->id, od_status_str(d));
    }
    return s;
}

/* Read, change, conditionally write; re-read when another writer won. On
 * OD_OK *holder keeps the strings of *pr alive (the caller puts it). */
static od_status product_update(products *p, const char *id, const product_input *in, int full,
                                json_object **holder, product *pr)
{
    const od_storage *st = p->st;
    od_status s = OD_ERR_CONFLICT;
    for (int64_t attempt = 0; attempt < p->update_attempts && s == OD_ERR_CONFLICT; attempt++) {
        od_doc doc = {0};
        json_object_put(*holder);
        *holder = NULL;
        s = st->ops->get(st->self, PRODUCTS_TABLE, id, &doc);
        if (s == OD_OK)
            s = product_decode(p, &doc, holder, pr);
        uint64_t version = doc.version;
        od_doc_clear(p->h, &doc);
        if (s != OD_OK)
            return s;
        input_apply(in, full, pr, p->h->now_ms());
        s = product_store(p, pr, OD_PUT_IF_VERSION, version);
    }
    if (s != OD_OK)
        return s;
    /* After the document: a rename refused with 409 must not touch stock. */
    if (in->stock >= 0)
        return st->ops->counter_set(st->self, STOCK_TABLE, id, in->stock);
    return stock_read(p, id, &pr->stock);
}

/* Delete the document (at the version shown to the client) and its counter. */
static od_status product_delete(products *p, const char *id, json_object **holder, product *pr)
{
    const od_storage *st = p->st;
    od_status s = OD_ERR_CONFLICT;
    for (int64_t attempt = 0; attempt < p->update_attempts && s == OD_ERR_CONFLICT; attempt++) {
        od_doc doc = {0};
        json_object_put(*holder);
        *holder = NULL;
        s = st->ops->get(st->self, PRODUCTS_TABLE, id, &doc);
        if (s == OD_OK)
            s = product_decode(p, &doc, holder, pr);
        if (s == OD_OK)
            s = stock_read(p, id, &pr->stock);
        if (s == OD_OK)
            s = st->ops->del(st->self, PRODUCTS_TABLE, id, doc.version);
        od_doc_clear(p->h, &doc);
    }
    if (s != OD_OK)
        return s;
    od_status d = st->ops->counter_del(st->self, STOCK_TABLE, id);
    if (d != OD_OK && d != OD_ERR_NOT_FOUND) /* harmless: ids are never reused */
        p->h->log(p->mod, OD_LOG_WARN, "%s/%s: orphan counter left behind (%s)", STOCK_TABLE, id,
                  od_status_str(d));
    return OD_OK;
}

/* ---- replies ---------------------------------------------------------------- */

static od_status reply_not_found(products *p, od_request *req)
{
    return p->h->reply_error(req, 404, "not_found", "Product not found");
}

/* Storage outcomes the client can act on get their own words; the rest go
 * through the shared mapping (503 unavailable, 500 internal). */
static od_status reply_failure(products *p, od_request *req, od_status s)
{
    switch (s) {
    case OD_ERR_NOT_FOUND:
        return reply_not_found(p, req);
    case OD_ERR_EXISTS:
        return p->h->reply_error(req, 409, "conflict", "A product with this name already exists");
    case OD_ERR_CONFLICT:
        return p->h->reply_error(req, 409, "conflict",
                                 "The product kept changing while being updated; retry");
    case OD_ERR_NOMEM:
        return s; /* the core answers 500; replying needs memory too */
    case OD_ERR_UNAVAILABLE:
    case OD_ERR_CLOSED:
        break;
    default:
        p->h->log(p->mod, OD_LOG_ERROR, "request %s: %s", p->h->req_id(req), od_status_str(s));
        break;
    }
    return odm_reply_status(p->h, req, s);
}

static od_status reply_product(products *p, od_request *req, int status, const char *message,
                               const product *pr)
{
    json_object *o = product_api_json(pr);
    if (o == NULL)
        return OD_ERR_NOMEM;
    od_status s = odm_reply_json(p->h, req, status, message, o);
    json_object_put(o);
    return s;
}

/* The :id parameter; product ids are UUIDs, anything else cannot exist. */
static const char *id_param(products *p, od_request *req)
{
    const char *id = p->h->req_param(req, "id");
    return id != NULL && odm_is_uuid(id) ? id : NULL;
}

/* ---- handlers ---------------------------------------------------------------- */

static od_status handle_list(void *self, od_request *req)
{
    products *p = self;
    odm_page_req pg;
    odm_err e = {{0}};
    if (odm_page_params(p->h, req, &pg, &e) != OD_OK)
        return odm_reply_invalid(p->h, req, &e);

    od_page page = {0};
    od_status s = p->st->ops->scan(p->st->self, PRODUCTS_TABLE, pg.cursor, pg.limit, 0, &page);
    if (s == OD_ERR_INVALID) {
        odm_err_set(&e, "query parameter 'cursor' is not a valid cursor");
        return odm_reply_invalid(p->h, req, &e);
    }
    json_object *items = s == OD_OK ? json_object_new_array_ext((int)page.count) : NULL;
    if (s == OD_OK && items == NULL)
        s = OD_ERR_NOMEM;
    for (size_t i = 0; s == OD_OK && i < page.count; i++) {
        json_object *item = NULL;
        s = product_view(p, &page.items[i], &item);
        if (s == OD_OK && json_object_array_add(items, item) != 0) {
            json_object_put(item);
            s = OD_ERR_NOMEM;
        }
    }
    s = s == OD_OK ? odm_reply_list(p->h, req, items, page.next) : reply_failure(p, req, s);
    json_object_put(items);
    od_page_clear(p->h, &page);
    return s;
}

/* Reply 200 with the API view of a stored product and its current stock:
 * from this thread's cache when rendered from the same bytes and stock,
 * else rendered with json-c exactly like product_view() and remembered.
 * The document's key is the product id, so the stock is read first. */
static od_status reply_doc(products *p, od_request *req, const od_doc *doc)
{
    int64_t stock = 0;
    od_status s = stock_read(p, doc->key, &stock);
    if (s != OD_OK)
        return reply_failure(p, req, s);
    size_t len = 0;
    const char *text = odm_view_cache_find(p->views, doc, stock, &len);
    if (text != NULL)
        return p->h->reply(req, 200, "OK", text, len);
    json_object *holder = NULL, *o = NULL;
    product pr;
    s = product_decode(p, doc, &holder, &pr);
    if (s == OD_OK) {
        pr.stock = stock;
        o = product_api_json(&pr);
        text = o != NULL ? json_object_to_json_string_length(o, JSON_FLAGS, &len) : NULL;
        s = text != NULL ? OD_OK : OD_ERR_NOMEM;
    }
    if (s == OD_OK)
        odm_view_cache_store(p->views, doc, stock, text, len);
    s = s == OD_OK ? p->h->reply(req, 200, "OK", text, len) : reply_failure(p, req, s);
    json_object_put(o);
    json_object_put(holder);
    return s;
}

static od_status handle_get(void *self, od_request *req)
{
    products *p = self;
    const char *id = id_param(p, req);
    if (id == NULL)
        return reply_not_found(p, req);
    od_doc doc = {0};
    od_status s = p->st->ops->get(p->st->self, PRODUCTS_TABLE, id, &doc);
    s = s == OD_OK ? reply_doc(p, req, &doc) : reply_failure(p, req, s);
    od_doc_clear(p->h, &doc);
    return s;
}

static od_status handle_get_by_name(void *self, od_request *req)
{
    products *p = self;
    const char *raw = p->h->req_param(req, "name");
    const char *name = NULL;
    char value[NAME_INDEX_VALUE_MAX + 1];
    odm_err e = {{0}};
    if (raw == NULL || name_normalize(p, req, raw, &name, &e) != OD_OK)
        return reply_not_found(p, req); /* no product can have that name */
    od_status s = name_index_value(name, value);
    od_doc doc = {0};
    if (s == OD_OK)
        s = p->st->ops->lookup(p->st->self, PRODUCTS_TABLE, NAME_INDEX, value, &doc);
    s = s == OD_OK ? reply_doc(p, req, &doc) : reply_failure(p, req, s);
    od_doc_clear(p->h, &doc);
    return s;
}

/* Parse and validate the body; on any failure the reply is sent and *body
 * is NULL. *rs is what the handler returns then. */
static json_object *read_input(products *p, od_request *req, int full, product_input *in,
                               od_status *rs)
{
    odm_err e = {{0}};
    json_object *body = odm_body_object(p->h, req);
    *rs = OD_OK;
    if (body == NULL)
        return NULL; /* odm_body_object answered 400 invalid_json */
    od_status s = input_parse(p, req, body, full, in, &e);
    if (s == OD_OK && !full && input_empty(in)) {
        odm_err_set(&e, "nothing to change: send name, description, price or stock");
        s = OD_ERR_INVALID;
    }
    if (s == OD_OK)
        return body;
    *rs = s == OD_ERR_INVALID ? odm_reply_invalid(p->h, req, &e) : s;
    json_object_put(body);
    return NULL;
}

static od_status handle_create(void *self, od_request *req)
{
    products *p = self;
    product_input in;
    od_status s;
    json_object *body = read_input(p, req, 1, &in, &s);
    if (body == NULL)
        return s;

    product pr = {.name = in.name, .description = in.description ? in.description : "",
                  .price_cents = in.price_cents, .stock = in.stock};
    s = p->h->new_id(pr.id);
    odm_iso8601(p->h->now_ms(), pr.created_at);
    memcpy(pr.updated_at, pr.created_at, sizeof pr.updated_at);
    if (s == OD_OK)
        s = product_create(p, &pr);
    s = s == OD_OK ? reply_product(p, req, 201, "Product created", &pr) : reply_failure(p, req, s);
    json_object_put(body);
    return s;
}

/* PUT (full = 1, a full replacement) and PATCH (full = 0, any subset). */
static od_status handle_update(products *p, od_request *req, int full)
{
    const char *id = id_param(p, req);
    if (id == NULL)
        return reply_not_found(p, req);
    product_input in;
    od_status s;
    json_object *body = read_input(p, req, full, &in, &s);
    if (body == NULL)
        return s;

    json_object *stored = NULL;
    product pr;
    s = product_update(p, id, &in, full, &stored, &pr);
    s = s == OD_OK ? reply_product(p, req, 200, "Product updated", &pr) : reply_failure(p, req, s);
    json_object_put(stored);
    json_object_put(body);
    return s;
}

static od_status handle_put(void *self, od_request *req)
{
    return handle_update(self, req, 1);
}

static od_status handle_patch(void *self, od_request *req)
{
    return handle_update(self, req, 0);
}

static od_status handle_delete(void *self, od_request *req)
{
    products *p = self;
    const char *id = id_param(p, req);
    if (id == NULL)
        return reply_not_found(p, req);
    json_object *stored = NULL;
    product pr;
    od_status s = product_delete(p, id, &stored, &pr);
    s = s == OD_OK ? reply_product(p, req, 200, "Product deleted", &pr) : reply_failure(p, req, s);
    json_object_put(stored);
    return s;
}

/* ---- lifecycle --------------------------------------------------------------- */

typedef struct route_def {
    const char *method;
    const char *pattern;
    uint32_t access;
    od_handler_fn fn;
} route_def;

static const route_def ROUTES[] = {
    {"GET", "/api/products", OD_ACCESS_PUBLIC, handle_list},
    {"POST", "/api/products", OD_ACCESS_ADMIN, handle_create},
    {"GET", "/api/products/:id", OD_ACCESS_USER, handle_get},
    {"GET", "/api/products/id/:id", OD_ACCESS_USER, handle_get}, /* the old system's alias */
    {"GET", "/api/products/name/:name", OD_ACCESS_USER, handle_get_by_name},
    {"PUT", "/api/products/:id", OD_ACCESS_ADMIN, handle_put},
    {"PATCH", "/api/products/:id", OD_ACCESS_ADMIN, handle_patch},
    {"DELETE", "/api/products/:id", OD_ACCESS_ADMIN, handle_delete},
};

static od_status register_routes(const od_host_api *h, od_module *mod)
{
    for (size_t i = 0; i < sizeof ROUTES / sizeof ROUTES[0]; i++) {
        const route_def *r = &ROUTES[i];
        od_status s = h->route(mod, r->method, r->pattern, r->access, r->fn);
        if (s != OD_OK) {
            h->log(mod, OD_LOG_ERROR, "cannot register %s %s: %s", r->method, r->pattern,
                   od_status_str(s));
            return s;
        }
    }
    return OD_OK;
}

static od_status products_init(const od_host_api *h, od_module *mod, void **self)
{
    const od_storage *st = h->storage(mod);
    if (st == NULL) {
        h->log(mod, OD_LOG_ERROR, "no storage backend configured (set storage.backend)");
        return OD_ERR_CONFIG;
    }
    int64_t attempts = 0;
    od_status s = h->config_int(mod, "update_attempts", 5, 1, 100, &attempts);
    if (s != OD_OK)
        return s;
    s = st->ops->define_table(st->self, &PRODUCTS_DEF);
    if (s != OD_OK) {
        h->log(mod, OD_LOG_ERROR, "cannot define table %s: %s", PRODUCTS_TABLE, od_status_str(s));
        return s;
    }
    products *p = h->calloc(1, sizeof *p);
    if (p == NULL)
        return OD_ERR_NOMEM;
    *p = (products){.h = h, .mod = mod, .st = st, .update_attempts = attempts};
    s = odm_view_cache_new(h, &p->views);
    if (s != OD_OK) {
        h->free(p);
        return s;
    }
    s = register_routes(h, mod);
    if (s != OD_OK) {
        odm_view_cache_free(p->views);
        h->free(p);
        return s;
    }
    *self = p;
    return OD_OK;
}

static void products_destroy(void *self)
{
    products *p = self;
    if (p == NULL)
        return;
    odm_view_cache_free(p->views);
    p->h->free(p);
}

static const od_module_desc DESCRIPTOR = {
    .magic = OD_MODULE_MAGIC,
    .abi_major = OD_ABI_MAJOR,
    .abi_minor = OD_ABI_MINOR,
    .size = sizeof(od_module_desc),
    .kind = OD_KIND_SERVICE,
    .name = "products",
    .version = "1.0.0",
    .description = "Product catalogue with prices and stock (/api/products)",
    .init = products_init,
    .destroy = products_destroy,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void);

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &DESCRIPTOR;
}
