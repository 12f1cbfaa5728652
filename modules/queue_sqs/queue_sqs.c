/*
 * queue_sqs - the queue backend on Amazon SQS (OD_KIND_QUEUE), for many
 * orderd instances sharing one queue. Each lane is its own standard queue:
 * <prefix>normal, <prefix>priority and <prefix>dead; every op is one SQS
 * call (SendMessage, ReceiveMessage, DeleteMessage, ChangeMessageVisibility,
 * GetQueueAttributes) through odaws (SigV4 by libcurl, JSON protocol). init
 * resolves the three QueueUrls with GetQueueUrl and keeps them as opaque ids
 * sent in request bodies; requests always go to the configured endpoint.
 * With create_missing it creates the dead-letter queue first, then
 * normal/priority with a RedrivePolicy pointing at it (maxReceiveCount), so
 * SQS dead-letters a message even if every worker crashes on it; the queue
 * worker still counts attempts itself. Receipts are SQS ReceiptHandles.
 * Times are SQS's: whole seconds, rounded up (200 ms -> 1 s).
 *
 * Config (group "queue"): queue_prefix ("orderd-"), max_receive_count (10),
 * visibility_default_ms (30000; the queues' default VisibilityTimeout when
 * created), plus odaws's region, endpoint, timeout_ms, connect_timeout_ms,
 * max_retries, retry_base_ms, create_missing (odaws.h).
 * Threads: none of its own. State is read-only after init; each calling
 * thread uses its own CURL handle inside odaws. stop() closes the client:
 * long polls in flight end within about a second, later ops return
 * OD_ERR_CLOSED.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <orderd/orderd.h>

#include "odaws.h"

#define QS_MAX_DELAY_MS 900000
#define QS_MAX_WAIT_MS 20000
#define QS_MAX_VISIBILITY_MS (12 * 3600 * 1000)
#define QS_QUEUE_NAME_MAX 80       /* SQS's limit */
#define QS_RECEIPT_MAX 8192        /* AWS handles are ~400 bytes */
#define QS_DEPTH_ATTRS 2

static const char *const LANE_NAME[OD_LANE_COUNT] = {
    [OD_LANE_NORMAL] = "normal", [OD_LANE_PRIORITY] = "priority", [OD_LANE_DEAD] = "dead"};

static const odaws_service SQS_SERVICE = {
    .name = "sqs", .env_suffix = "SQS", .target_prefix = "AmazonSQS"};

typedef struct qs {
    const od_host_api *h;
    od_module *mod;
    odaws_client *aws;
    const char *prefix; /* owned by the core's config */
    int64_t max_receive_count;
    int64_t visibility_default_ms;
    char *url[OD_LANE_COUNT]; /* QueueUrl per lane: opaque ids */
} qs;

/* ---- small helpers ------------------------------------------------------ */

static uint32_t ceil_seconds(uint32_t ms)
{
    return (ms + 999) / 1000;
}

/* 1 if s[0..len) is UTF-8 made only of characters SQS accepts in a body:
 * #x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF. */
static int body_chars_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned c = s[i];
        uint32_t cp;
        size_t n;
        if (c < 0x80) {
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
                return 0;
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            n = 1, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, cp = c & 0x07;
        else
            return 0;
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        /* overlong forms, surrogates, U+FFFE/FFFF, beyond U+10FFFF */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff)
            return 0;
        i += n + 1;
    }
    return 1;
}

/* Receipts are opaque but printable; anything else cannot be one of ours. */
static int receipt_plausible(const char *r)
{
    size_t n = r ? strnlen(r, QS_RECEIPT_MAX + 1) : 0;
    if (n == 0 || n > QS_RECEIPT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)r[i] <= ' ' || (unsigned char)r[i] >= 0x7f)
            return 0;
    return 1;
}

static int add_string(json_object *o, const char *key, const char *value)
{
    json_object *v = json_object_new_string(value);
    return v && json_object_object_add(o, key, v) == 0 ? 0 : -1;
}

static int add_int(json_object *o, const char *key, int64_t value)
{
    json_object *v = json_object_new_int64(value);
    return v && json_object_object_add(o, key, v) == 0 ? 0 : -1;
}

static int add_names(json_object *o, const char *key, const char *const *names, size_t n)
{
    json_object *a = json_object_new_array();
    if (!a || json_object_object_add(o, key, a) != 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (json_object_array_add(a, json_object_new_string(names[i])) != 0)
            return -1;
    return 0;
}

/* A request object carrying the lane's QueueUrl; NULL on OOM. */
static json_object *lane_request(const qs *q, uint32_t lane)
{
    json_object *o = json_object_new_object();
    if (o && add_string(o, "QueueUrl", q->url[lane]) != 0) {
        json_object_put(o);
        return NULL;
    }
    return o;
}

static const char *member_string(json_object *o, const char *key)
{
    json_object *v;
    if (!o || !json_object_object_get_ex(o, key, &v) || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

/* SQS sends numbers as strings ("ApproximateReceiveCount":"2"); accept a
 * JSON integer too. */
static int member_number(json_object *o, const char *key, int64_t *out)
{
    json_object *num;
    if (o && json_object_object_get_ex(o, key, &num) && json_object_is_type(num, json_type_int)) {
        *out = json_object_get_int64(num);
        return *out >= 0 ? 0 : -1;
    }
    const char *s = member_string(o, key);
    char *end;
    if (!s || !*s)
        return -1;
    long long v = strtoll(s, &end, 10);
    if (*end || v < 0)
        return -1;
    *out = (int64_t)v;
    return 0;
}

/* ---- calls -------------------------------------------------------------- */

/* Map an SQS error answer to a status. receipt_op: DeleteMessage and
 * ChangeMessageVisibility, where a bad or stale handle is NOT_FOUND. */
static od_status answer_status(const qs *q, const char *op, const odaws_response *r,
                               int receipt_op)
{
    if (receipt_op && (odaws_is_error(r, "ReceiptHandleIsInvalid") ||
                       odaws_is_error(r, "MessageNotInflight")))
        return OD_ERR_NOT_FOUND;
    if (odaws_is_error(r, "InvalidParameterValue") || odaws_is_error(r, "MissingParameter") ||
        odaws_is_error(r, "InvalidMessageContents"))
        return OD_ERR_INVALID;
    /* QueueDoesNotExist, AccessDenied, bad signature...: an operator problem,
     * not the caller's; say it in the log once per failing call. */
    q->h->log(q->mod, OD_LOG_ERROR, "SQS %s failed: HTTP %ld %s: %s", op, r->http_status,
              r->error_type, r->error_message);
    return OD_ERR_UNAVAILABLE;
}

/* Send req (consumed) as op. On OD_OK, *out is the parsed 2xx answer. */
static od_status call(const qs *q, const char *op, json_object *req, int64_t min_timeout_ms,
                      int receipt_op, json_object **out)
{
    *out = NULL;
    if (!req)
        return OD_ERR_NOMEM;
    odaws_response r;
    od_status st = odaws_call_json(q->aws, op, req, min_timeout_ms, &r, out);
    json_object_put(req);
    if (st == OD_OK && !odaws_ok(&r))
        st = answer_status(q, op, &r, receipt_op);
    odaws_response_clear(q->aws, &r);
    return st;
}

/* ---- ops ---------------------------------------------------------------- */

static od_status qs_send(void *self, uint32_t lane, const char *body, size_t len,
                         uint32_t delay_ms, char **id_out)
{
    qs *q = self;
    if (id_out)
        *id_out = NULL;
    if (lane >= OD_LANE_COUNT || !body || len == 0 || delay_ms > QS_MAX_DELAY_MS)
        return OD_ERR_INVALID;
    if (len > OD_MESSAGE_MAX)
        return OD_ERR_TOO_LARGE;
    if (!body_chars_valid((const unsigned char *)body, len))
        return OD_ERR_INVALID;
    json_object *req = lane_request(q, lane), *res;
    json_object *b = req ? json_object_new_string_len(body, (int)len) : NULL;
    if (!b || json_object_object_add(req, "MessageBody", b) != 0 ||
        add_int(req, "DelaySeconds", ceil_seconds(delay_ms)) != 0) {
        json_object_put(req);
        return OD_ERR_NOMEM;
    }
    od_status st = call(q, "SendMessage", req, 0, 0, &res);
    if (st != OD_OK)
        return st;
    const char *id = member_string(res, "MessageId");
    if (!id)
        st = OD_ERR_INTERNAL;
    else if (id_out && !(*id_out = q->h->strdup(id)))
        st = OD_ERR_NOMEM;
    json_object_put(res);
    return st;
}

/* Copy one received SQS message into m (host memory). */
static od_status take_message(const qs *q, json_object *msg, uint32_t lane, od_message *m)
{
    const char *id = member_string(msg, "MessageId");
    const char *receipt = member_string(msg, "ReceiptHandle");
    json_object *body, *attrs = NULL;
    int64_t count = 1, sent = 0;
    if (!id || !receipt || !json_object_object_get_ex(msg, "Body", &body) ||
        !json_object_is_type(body, json_type_string))
        return OD_ERR_INTERNAL;
    json_object_object_get_ex(msg, "Attributes", &attrs);
    if (member_number(attrs, "ApproximateReceiveCount", &count) != 0 || count < 1)
        count = 1;
    if (member_number(attrs, "SentTimestamp", &sent) != 0)
        sent = q->h->now_ms();
    memset(m, 0, sizeof *m);
    size_t len = (size_t)json_object_get_string_len(body);
    m->id = q->h->strdup(id);
    m->receipt = q->h->strdup(receipt);
    m->body = q->h->alloc(len + 1);
    if (!m->id || !m->receipt || !m->body) {
        od_message_clear(q->h, m);
        return OD_ERR_NOMEM;
    }
    memcpy(m->body, json_object_get_string(body), len);
    m->body[len] = '\0';
    m->len = len;
    m->lane = lane;
    m->receive_count = count > UINT32_MAX ? UINT32_MAX : (uint32_t)count;
    m->sent_ms = sent;
    return OD_OK;
}

static od_status take_messages(const qs *q, json_object *res, uint32_t lane, uint32_t max,
                               od_message *out, size_t *n)
{
    json_object *list;
    if (!json_object_object_get_ex(res, "Messages", &list))
        return OD_OK; /* nothing arrived: AWS and fauxqs answer "{}" */
    if (!json_object_is_type(list, json_type_array) || json_object_array_length(list) > max)
        return OD_ERR_INTERNAL;
    for (size_t i = 0; i < json_object_array_length(list); i++) {
        od_status st = take_message(q, json_object_array_get_idx(list, i), lane, &out[*n]);
        if (st != OD_OK) {
            /* Those already taken stay in flight and come back after their
             * visibility timeout: nothing is lost. */
            while (*n > 0)
                od_message_clear(q->h, &out[--*n]);
            return st;
        }
        (*n)++;
    }
    return OD_OK;
}

static od_status qs_receive(void *self, uint32_t lane, uint32_t max, uint32_t wait_ms,
                            uint32_t visibility_ms, od_message *out, size_t *n)
{
    static const char *const attrs[] = {"ApproximateReceiveCount", "SentTimestamp"};
    qs *q = self;
    if (n)
        *n = 0;
    if (lane >= OD_LANE_COUNT || max < 1 || max > OD_RECEIVE_MAX || wait_ms > QS_MAX_WAIT_MS ||
        visibility_ms > QS_MAX_VISIBILITY_MS || !out || !n)
        return OD_ERR_INVALID;
    uint32_t wait_s = ceil_seconds(wait_ms);
    json_object *req = lane_request(q, lane), *res;
    if (!req || add_int(req, "MaxNumberOfMessages", max) != 0 ||
        add_int(req, "WaitTimeSeconds", wait_s) != 0 ||
        add_int(req, "VisibilityTimeout", ceil_seconds(visibility_ms)) != 0 ||
        add_names(req, "AttributeNames", attrs, 2) != 0 ||
        add_names(req, "MessageSystemAttributeNames", attrs, 2) != 0) {
        json_object_put(req);
        return OD_ERR_NOMEM;
    }
    /* The per-attempt timeout must outlast the long poll itself. */
    int64_t timeout = (int64_t)wait_s * 1000 + odaws_timeout_ms(q->aws);
    od_status st = call(q, "ReceiveMessage", req, timeout, 0, &res);
    if (st != OD_OK)
        return st;
    st = take_messages(q, res, lane, max, out, n);
    json_object_put(res);
    return st;
}

static od_status receipt_call(qs *q, const char *op, uint32_t lane, const char *receipt,
                              int64_t visibility_s)
{
    if (lane >= OD_LANE_COUNT)
        return OD_ERR_INVALID;
    if (!receipt_plausible(receipt))
        return OD_ERR_NOT_FOUND;
    json_object *req = lane_request(q, lane), *res;
    if (!req || add_string(req, "ReceiptHandle", receipt) != 0 ||
        (visibility_s >= 0 && add_int(req, "VisibilityTimeout", visibility_s) != 0)) {
        json_object_put(req);
        return OD_ERR_NOMEM;
    }
    od_status st = call(q, op, req, 0, 1, &res);
    json_object_put(res);
    return st;
}

/* SQS answers 200 for a stale handle (the message was received again since)
 * and deletes nothing; see docs/aws.md for why orderd stays correct. */
static od_status qs_del(void *self, uint32_t lane, const char *receipt)
{
    return receipt_call(self, "DeleteMessage", lane, receipt, -1);
}

static od_status qs_change_visibility(void *self, uint32_t lane, const char *receipt,
                                      uint32_t visibility_ms)
{
    if (visibility_ms > QS_MAX_VISIBILITY_MS)
        return OD_ERR_INVALID;
    return receipt_call(self, "ChangeMessageVisibility", lane, receipt,
                        ceil_seconds(visibility_ms));
}

static od_status get_attributes(const qs *q, uint32_t lane, const char *const *names, size_t n,
                                json_object **attrs_out)
{
    json_object *req = lane_request(q, lane), *res;
    if (!req || add_names(req, "AttributeNames", names, n) != 0) {
        json_object_put(req);
        return OD_ERR_NOMEM;
    }
    od_status st = call(q, "GetQueueAttributes", req, 0, 0, &res);
    if (st != OD_OK)
        return st;
    json_object *attrs;
    if (!json_object_object_get_ex(res, "Attributes", &attrs) ||
        !json_object_is_type(attrs, json_type_object)) {
        json_object_put(res);
        return OD_ERR_INTERNAL;
    }
    *attrs_out = json_object_get(attrs);
    json_object_put(res);
    return OD_OK;
}

static od_status qs_depth(void *self, uint32_t lane, int64_t *visible, int64_t *in_flight)
{
    static const char *const names[QS_DEPTH_ATTRS] = {"ApproximateNumberOfMessages",
                                                      "ApproximateNumberOfMessagesNotVisible"};
    qs *q = self;
    if (lane >= OD_LANE_COUNT)
        return OD_ERR_INVALID;
    json_object *attrs;
    od_status st = get_attributes(q, lane, names, QS_DEPTH_ATTRS, &attrs);
    if (st != OD_OK)
        return st;
    int64_t v, f;
    if (member_number(attrs, names[0], &v) != 0 || member_number(attrs, names[1], &f) != 0)
        st = OD_ERR_INTERNAL;
    json_object_put(attrs);
    if (st == OD_OK && visible)
        *visible = v;
    if (st == OD_OK && in_flight)
        *in_flight = f;
    return st;
}

static od_status qs_ping(void *self)
{
    static const char *const names[] = {"ApproximateNumberOfMessages"};
    json_object *attrs;
    od_status st = get_attributes(self, OD_LANE_NORMAL, names, 1, &attrs);
    if (st == OD_OK)
        json_object_put(attrs);
    return st;
}

/* ---- provisioning --------------------------------------------------------- */

static od_status queue_name(const qs *q, uint32_t lane, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s%s", q->prefix, LANE_NAME[lane]);
    return n > 0 && (size_t)n < cap ? OD_OK : OD_ERR_CONFIG;
}

/* GetQueueUrl: OD_OK with *url (host memory), OD_ERR_NOT_FOUND, or another error. */
static od_status lookup_url(const qs *q, const char *name, char **url)
{
    json_object *req = json_object_new_object(), *res;
    if (!req || add_string(req, "QueueName", name) != 0) {
        json_object_put(req);
        return OD_ERR_NOMEM;
    }
    odaws_response r;
    od_status st = odaws_call_json(q->aws, "GetQueueUrl", req, 0, &r, &res);
    json_object_put(req);
    if (st == OD_OK && odaws_is_error(&r, "QueueDoesNotExist"))
        st = OD_ERR_NOT_FOUND;
    else if (st == OD_OK && !odaws_ok(&r))
        st = answer_status(q, "GetQueueUrl", &r, 0);
    odaws_response_clear(q->aws, &r);
    if (st == OD_OK) {
        const char *u = member_string(res, "QueueUrl");
        st = !u ? OD_ERR_INTERNAL : (*url = q->h->strdup(u)) ? OD_OK : OD_ERR_NOMEM;
    }
    json_object_put(res);
    return st;
}

/* {"deadLetterTargetArn":"...","maxReceiveCount":"10"} as a string (SQS
 * attribute values are strings, RedrivePolicy is JSON inside one). */
static json_object *redrive_policy(const qs *q, const char *dlq_arn)
{
    char count[24];
    snprintf(count, sizeof count, "%" PRId64, q->max_receive_count);
    json_object *p = json_object_new_object(), *s = NULL;
    if (p && add_string(p, "deadLetterTargetArn", dlq_arn) == 0 &&
        add_string(p, "maxReceiveCount", count) == 0)
        s = json_object_new_string(
            json_object_to_json_string_ext(p, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
    json_object_put(p);
    return s;
}

/* The CreateQueue request; NULL on OOM. */
static json_object *create_request(const qs *q, const char *name, const char *dlq_arn)
{
    char vis[24];
    snprintf(vis, sizeof vis, "%" PRIu32, ceil_seconds((uint32_t)q->visibility_default_ms));
    json_object *req = json_object_new_object(), *attrs = json_object_new_object();
    if (!req || !attrs || json_object_object_add(req, "Attributes", attrs) != 0) {
        json_object_put(attrs);
        json_object_put(req);
        return NULL;
    }
    /* attrs belongs to req from here on. */
    json_object *policy = dlq_arn ? redrive_policy(q, dlq_arn) : NULL;
    if ((dlq_arn && (!policy || json_object_object_add(attrs, "RedrivePolicy", policy) != 0)) ||
        add_string(req, "QueueName", name) != 0 ||
        add_string(attrs, "VisibilityTimeout", vis) != 0) {
        json_object_put(req);
        return NULL;
    }
    return req;
}

static od_status create_queue(const qs *q, const char *name, const char *dlq_arn, char **url)
{
    json_object *res;
    od_status st = call(q, "CreateQueue", create_request(q, name, dlq_arn), 0, 0, &res);
    if (st != OD_OK)
        return st;
    const char *u = member_string(res, "QueueUrl");
    st = !u ? OD_ERR_INTERNAL : (*url = q->h->strdup(u)) ? OD_OK : OD_ERR_NOMEM;
    json_object_put(res);
    if (st == OD_OK)
        q->h->log(q->mod, OD_LOG_INFO, "created SQS queue %s", name);
    return st;
}

static od_status queue_arn(const qs *q, uint32_t lane, char **arn)
{
    static const char *const names[] = {"QueueArn"};
    json_object *attrs;
    od_status st = get_attributes(q, lane, names, 1, &attrs);
    if (st != OD_OK)
        return st;
    const char *a = member_string(attrs, "QueueArn");
    st = !a ? OD_ERR_INTERNAL : (*arn = q->h->strdup(a)) ? OD_OK : OD_ERR_NOMEM;
    json_object_put(attrs);
    return st;
}

/* Resolve (or create) one lane's queue. The dead lane goes first so that
 * normal/priority can be created with a RedrivePolicy naming its ARN. */
static od_status resolve_lane(qs *q, uint32_t lane, char **dlq_arn)
{
    char name[QS_QUEUE_NAME_MAX + 1];
    od_status st = queue_name(q, lane, name, sizeof name);
    if (st == OD_OK)
        st = lookup_url(q, name, &q->url[lane]);
    if (st == OD_ERR_NOT_FOUND && !odaws_create_missing(q->aws)) {
        q->h->log(q->mod, OD_LOG_ERROR,
                  "SQS queue \"%s\" does not exist at %s: run `orderd --provision` once (or set "
                  "queue.create_missing = true) to create the queues",
                  name, odaws_endpoint(q->aws));
        return OD_ERR_CONFIG;
    }
    if (st == OD_ERR_NOT_FOUND) {
        if (lane != OD_LANE_DEAD && !*dlq_arn && (st = queue_arn(q, OD_LANE_DEAD, dlq_arn)) != OD_OK)
            return st;
        st = create_queue(q, name, lane == OD_LANE_DEAD ? NULL : *dlq_arn, &q->url[lane]);
    }
    if (st != OD_OK && st != OD_ERR_CONFIG)
        q->h->log(q->mod, OD_LOG_ERROR, "cannot resolve SQS queue \"%s\" at %s: %s", name,
                  odaws_endpoint(q->aws), od_status_str(st));
    return st;
}

static od_status resolve_queues(qs *q)
{
    static const uint32_t order[OD_LANE_COUNT] = {OD_LANE_DEAD, OD_LANE_NORMAL, OD_LANE_PRIORITY};
    char *dlq_arn = NULL;
    od_status st = OD_OK;
    for (size_t i = 0; i < OD_LANE_COUNT && st == OD_OK; i++)
        st = resolve_lane(q, order[i], &dlq_arn);
    q->h->free(dlq_arn);
    return st;
}

/* ---- lifecycle ------------------------------------------------------------ */

static od_status read_config(qs *q)
{
    const od_host_api *h = q->h;
    if (h->config_string(q->mod, "queue_prefix", "orderd-", &q->prefix) != OD_OK ||
        h->config_int(q->mod, "max_receive_count", 10, 1, 1000, &q->max_receive_count) != OD_OK ||
        h->config_int(q->mod, "visibility_default_ms", 30000, 0, QS_MAX_VISIBILITY_MS,
                      &q->visibility_default_ms) != OD_OK)
        return OD_ERR_CONFIG;
    size_t n = strlen(q->prefix);
    int ok = n + strlen("priority") <= QS_QUEUE_NAME_MAX;
    for (size_t i = 0; i < n && ok; i++)
        ok = (q->prefix[i] >= 'a' && q->prefix[i] <= 'z') ||
             (q->prefix[i] >= 'A' && q->prefix[i] <= 'Z') ||
             (q->prefix[i] >= '0' && q->prefix[i] <= '9') || q->prefix[i] == '-' ||
             q->prefix[i] == '_';
    if (!ok) {
        h->log(q->mod, OD_LOG_ERROR,
               "queue_prefix \"%s\" must be at most %d characters of [A-Za-z0-9_-]", q->prefix,
               QS_QUEUE_NAME_MAX - (int)strlen("priority"));
        return OD_ERR_CONFIG;
    }
    return OD_OK;
}

static void qs_destroy(void *self)
{
    qs *q = self;
    if (!q)
        return;
    for (size_t i = 0; i < OD_LANE_COUNT; i++)
        q->h->free(q->url[i]);
    odaws_client_free(q->aws);
    q->h->free(q);
}

static od_status qs_init(const od_host_api *host, od_module *mod, void **self)
{
    qs *q = host->calloc(1, sizeof *q);
    if (!q)
        return OD_ERR_NOMEM;
    q->h = host;
    q->mod = mod;
    od_status st = read_config(q);
    if (st == OD_OK)
        st = odaws_client_new(host, mod, &SQS_SERVICE, &q->aws);
    if (st == OD_OK)
        st = resolve_queues(q);
    if (st != OD_OK) {
        qs_destroy(q);
        return st;
    }
    *self = q;
    return OD_OK;
}

/* Ends long polls in flight (within about a second) and refuses new calls. */
static void qs_stop(void *self)
{
    qs *q = self;
    odaws_client_close(q->aws);
}

static const od_queue_ops QS_OPS = {
    .size = sizeof(od_queue_ops),
    .send = qs_send,
    .receive = qs_receive,
    .del = qs_del,
    .change_visibility = qs_change_visibility,
    .depth = qs_depth,
    .ping = qs_ping,
};

static const od_module_desc QS_DESC = {
    OD_MODULE_HEADER(OD_KIND_QUEUE),
    .name = "queue_sqs",
    .version = "1.0.0",
    .description = "queue backend on Amazon SQS (one standard queue per lane, redrive to a DLQ)",
    .init = qs_init,
    .stop = qs_stop,
    .destroy = qs_destroy,
    .ops = &QS_OPS,
};

OD_MODULE_EXPORT const od_module_desc *od_module_entry(void)
{
    return &QS_DESC;
}
