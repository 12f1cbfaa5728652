/*
 * order_model.c - the order document, its status machine and the stock
 * tokens, shared by the orders service and the step modules.
 *
 * Every status change is a conditional put against the version read, so a
 * writer that loses a race re-reads and decides again: that is what keeps a
 * cancelled order from being completed. Stock moves only through counter
 * ops carrying "reserve:<order>:<product>" / "release:<order>:<product>"
 * tokens, so redelivered messages and repeated cancels never move it twice.
 */
#include "order_model.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "odm.h"

static const char *const STATUSES[] = {ODO_PENDING, ODO_PROCESSING, ODO_COMPLETED, ODO_FAILED,
                                       ODO_CANCELLED};

int odo_status_valid(const char *status)
{
    for (size_t i = 0; i < sizeof STATUSES / sizeof STATUSES[0]; i++)
        if (strcmp(status, STATUSES[i]) == 0)
            return 1;
    return 0;
}

const char *odo_json_text(json_object *o, size_t *len)
{
    return json_object_to_json_string_length(
        o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, len);
}

const char *odo_str(json_object *doc, const char *key)
{
    json_object *v = NULL;
    if (!json_object_object_get_ex(doc, key, &v) || !json_object_is_type(v, json_type_string))
        return "";
    return json_object_get_string(v);
}

int odo_reserved(json_object *doc)
{
    json_object *v = NULL;
    return json_object_object_get_ex(doc, "reserved", &v) && json_object_get_boolean(v);
}

int odo_released(json_object *doc)
{
    json_object *v = NULL;
    return json_object_object_get_ex(doc, "released", &v) && json_object_get_boolean(v);
}

static json_object *history_of(json_object *doc)
{
    json_object *h = NULL;
    if (json_object_object_get_ex(doc, "history", &h) && json_object_is_type(h, json_type_array))
        return h;
    return NULL;
}

int odo_was_processing(json_object *doc)
{
    json_object *h = history_of(doc);
    size_t n = h ? json_object_array_length(h) : 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(odo_str(json_object_array_get_idx(h, i), "status"), ODO_PROCESSING) == 0)
            return 1;
    return 0;
}

static json_object *items_of(json_object *doc)
{
    json_object *items = NULL;
    if (json_object_object_get_ex(doc, "items", &items) &&
        json_object_is_type(items, json_type_array))
        return items;
    return NULL;
}

size_t odo_line_count(json_object *doc)
{
    json_object *items = items_of(doc);
    return items ? json_object_array_length(items) : 0;
}

od_status odo_line(json_object *doc, size_t i, const char **product_id, int64_t *quantity)
{
    json_object *items = items_of(doc);
    json_object *line = items ? json_object_array_get_idx(items, i) : NULL;
    json_object *qty = NULL;
    if (line == NULL || !json_object_object_get_ex(line, "quantity", &qty) ||
        !json_object_is_type(qty, json_type_int))
        return OD_ERR_INTERNAL;
    *product_id = odo_str(line, "productId");
    *quantity = json_object_get_int64(qty);
    return **product_id != '\0' && *quantity > 0 ? OD_OK : OD_ERR_INTERNAL;
}

/* ---- storage ---- */

od_status odo_load(const odo_ctx *c, const char *order_id, json_object **doc, uint64_t *version)
{
    od_doc d = {0};
    *doc = NULL;
    od_status s = c->storage->ops->get(c->storage->self, ODO_TABLE_ORDERS, order_id, &d);
    if (s == OD_ERR_INVALID)
        s = OD_ERR_NOT_FOUND; /* a key the backend refuses cannot name an order */
    if (s != OD_OK)
        return s;
    json_tokener *tok = json_tokener_new();
    json_object *o = tok ? json_tokener_parse_ex(tok, d.body, (int)d.len) : NULL;
    if (tok)
        json_tokener_free(tok);
    *version = d.version;
    od_doc_clear(c->host, &d);
    if (o == NULL || !json_object_is_type(o, json_type_object) || odo_str(o, "id")[0] == '\0') {
        json_object_put(o);
        return OD_ERR_INTERNAL;
    }
    *doc = o;
    return OD_OK;
}

od_status odo_put_of(json_object *doc, uint32_t cond, uint64_t expected, odo_put *out)
{
    size_t len = 0;
    const char *text = odo_json_text(doc, &len);
    if (text == NULL)
        return OD_ERR_NOMEM;
    out->idx[0] = (od_index_value){ODO_INDEX_CUSTOMER, odo_str(doc, "customerId")};
    out->idx[1] = (od_index_value){ODO_INDEX_STATUS, odo_str(doc, "status")};
    out->put = (od_put){.size = sizeof(od_put), .cond = cond, .table = ODO_TABLE_ORDERS,
                        .key = odo_str(doc, "id"), .body = text, .len = len, .idx = out->idx,
                        .n_idx = ODO_N_INDEXES, .expected = expected};
    return OD_OK;
}

od_status odo_store(const odo_ctx *c, json_object *doc, uint32_t cond, uint64_t expected,
                    uint64_t *new_version)
{
    odo_put p;
    od_status s = odo_put_of(doc, cond, expected, &p);
    if (s != OD_OK)
        return s;
    return c->storage->ops->put(c->storage->self, p.put.table, p.put.key, p.put.body, p.put.len,
                                p.put.idx, p.put.n_idx, cond, expected, new_version);
}

od_status odo_set_status(json_object *doc, const char *status, const char *reason, int64_t now_ms)
{
    char at[ODM_TIME_LEN + 1];
    odm_iso8601(now_ms, at);
    json_object *history = history_of(doc);
    if (history == NULL) {
        history = json_object_new_array();
        if (history == NULL)
            return OD_ERR_NOMEM;
        json_object_object_add(doc, "history", history);
    }
    json_object *entry = json_object_new_object();
    if (entry == NULL)
        return OD_ERR_NOMEM;
    json_object_object_add(entry, "status", json_object_new_string(status));
    json_object_object_add(entry, "at", json_object_new_string(at));
    if (reason != NULL)
        json_object_object_add(entry, "reason", json_object_new_string(reason));
    if (json_object_array_add(history, entry) != 0) {
        json_object_put(entry);
        return OD_ERR_NOMEM;
    }
    json_object_object_add(doc, "status", json_object_new_string(status));
    json_object_object_add(doc, "updatedAt", json_object_new_string(at));
    return OD_OK;
}

od_status odo_transition(const odo_ctx *c, json_object **doc, uint64_t *version, const char *status,
                         const char *reason, odo_allowed_fn allowed)
{
    for (int attempt = 0; attempt < ODO_PUT_RETRIES; attempt++) {
        if (!allowed(odo_str(*doc, "status")))
            return OD_ERR_CONFLICT;
        od_status s = odo_set_status(*doc, status, reason, c->host->now_ms());
        if (s == OD_OK)
            s = odo_store(c, *doc, OD_PUT_IF_VERSION, *version, version);
        if (s != OD_ERR_CONFLICT)
            return s;
        json_object *fresh = NULL;
        s = odo_load(c, odo_str(*doc, "id"), &fresh, version);
        if (s != OD_OK)
            return s;
        json_object_put(*doc);
        *doc = fresh;
    }
    /* Constant contention, not a decision: the caller may try again later. */
    return OD_ERR_UNAVAILABLE;
}

/* ---- stock ---- */

static od_status stock_add(const odo_ctx *c, const char *op, const char *order_id,
                           const char *product_id, int64_t delta, int64_t floor)
{
    char token[OD_KEY_MAX + 1];
    int n = snprintf(token, sizeof token, "%s:%s:%s", op, order_id, product_id);
    if (n < 0 || (size_t)n >= sizeof token)
        return OD_ERR_INVALID;
    return c->storage->ops->counter_add(c->storage->self, ODO_COUNTER_STOCK, product_id, delta,
                                        floor, token, NULL, NULL);
}

od_status odo_stock_reserve(const odo_ctx *c, const char *order_id, const char *product_id,
                            int64_t quantity)
{
    return stock_add(c, "reserve", order_id, product_id, -quantity, 0);
}

od_status odo_stock_release(const odo_ctx *c, const char *order_id, const char *product_id,
                            int64_t quantity)
{
    od_status s = stock_add(c, "release", order_id, product_id, quantity, INT64_MIN);
    /* The product and its counter were deleted: there is nothing to give back to. */
    return s == OD_ERR_NOT_FOUND ? OD_OK : s;
}

od_status odo_stock_release_if_reserved(const odo_ctx *c, const char *order_id,
                                        const char *product_id, int64_t quantity)
{
    od_status s = odo_stock_reserve(c, order_id, product_id, quantity);
    if (s == OD_ERR_CONFLICT || s == OD_ERR_NOT_FOUND)
        return OD_OK; /* nothing was taken for this line */
    if (s != OD_OK)
        return s;
    return odo_stock_release(c, order_id, product_id, quantity);
}

od_status odo_stock_release_order(const odo_ctx *c, json_object *doc)
{
    const char *order_id = odo_str(doc, "id");
    size_t n = odo_line_count(doc);
    for (size_t i = 0; i < n; i++) {
        const char *product_id = NULL;
        int64_t quantity = 0;
        od_status s = odo_line(doc, i, &product_id, &quantity);
        if (s == OD_OK)
            s = odo_stock_release_if_reserved(c, order_id, product_id, quantity);
        if (s != OD_OK)
            return s;
    }
    return OD_OK;
}

/* ---- money ---- */

json_object *odo_money_new(int64_t cents)
{
    char text[32];
    uint64_t mag = cents < 0 ? 0 - (uint64_t)cents : (uint64_t)cents;
    const char *sign = cents < 0 ? "-" : "";
    uint64_t whole = mag / 100, frac = mag % 100;
    if (frac == 0)
        snprintf(text, sizeof text, "%s%" PRIu64, sign, whole);
    else if (frac % 10 == 0)
        snprintf(text, sizeof text, "%s%" PRIu64 ".%" PRIu64, sign, whole, frac / 10);
    else
        snprintf(text, sizeof text, "%s%" PRIu64 ".%02" PRIu64, sign, whole, frac);
    /* The double is only what json-c would hand a reader; the text is what
     * gets serialized. */
    return json_object_new_double_s((double)cents / 100.0, text);
}
