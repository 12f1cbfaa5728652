/*
 * odm_reply.c - the replies every module gives for validation failures and
 * backend statuses, so the same condition always has the same code.
 */
#include "odm.h"

od_status odm_reply_invalid(const od_host_api *h, od_request *req, const odm_err *e)
{
    return h->reply_error(req, 400, "validation_failed", e->msg);
}

od_status odm_reply_status(const od_host_api *h, od_request *req, od_status s)
{
    switch (s) {
    case OD_ERR_NOT_FOUND:
        return h->reply_error(req, 404, "not_found", "Resource not found");
    case OD_ERR_EXISTS:
    case OD_ERR_CONFLICT:
        return h->reply_error(req, 409, "conflict", "The resource was changed or already exists");
    case OD_ERR_INVALID:
        return h->reply_error(req, 400, "validation_failed", "Invalid request parameters");
    case OD_ERR_TOO_LARGE:
        return h->reply_error(req, 413, "payload_too_large", "A value exceeds a size limit");
    case OD_ERR_UNAVAILABLE:
    case OD_ERR_CLOSED:
        return h->reply_error(req, 503, "unavailable", "Service temporarily unavailable");
    default:
        return h->reply_error(req, 500, "internal", "Internal error");
    }
}
