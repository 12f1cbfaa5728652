/*
 * orderd/status.h - the one status type used across the module ABI.
 *
 * 0 is success, every error is negative (nginx's shape). Business outcomes
 * such as "product not found" or "out of stock" are not errors of the
 * module: a handler answers them with a 4xx response and returns OD_OK.
 * The core maps a status to an HTTP response in exactly one place
 * (od_status_http() below is that mapping, shared so modules agree with it).
 */
#ifndef ORDERD_STATUS_H
#define ORDERD_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef int od_status;

#define OD_OK               0
#define OD_ERR_NOMEM       -1  /* allocation failed */
#define OD_ERR_INVALID     -2  /* bad argument or bad input */
#define OD_ERR_NOT_FOUND   -3  /* no such key / table / message */
#define OD_ERR_CONFLICT    -4  /* a condition failed: version changed, counter floor */
#define OD_ERR_EXISTS      -5  /* key or unique index value already present */
#define OD_ERR_UNAVAILABLE -6  /* backend unreachable or timed out; retry later */
#define OD_ERR_INTERNAL    -7  /* bug or corrupted state */
#define OD_ERR_CONFIG      -8  /* configuration error (init only) */
#define OD_ERR_TOO_LARGE   -9  /* value exceeds a size limit */
#define OD_ERR_UNSUPPORTED -10 /* operation not implemented by this backend */
#define OD_ERR_CLOSED      -11 /* the component is stopping; no new work */

/* Stable, lower-case name of a status, for logs and error codes. */
static inline const char *od_status_str(od_status s)
{
    switch (s) {
    case OD_OK: return "ok";
    case OD_ERR_NOMEM: return "out_of_memory";
    case OD_ERR_INVALID: return "invalid";
    case OD_ERR_NOT_FOUND: return "not_found";
    case OD_ERR_CONFLICT: return "conflict";
    case OD_ERR_EXISTS: return "exists";
    case OD_ERR_UNAVAILABLE: return "unavailable";
    case OD_ERR_INTERNAL: return "internal";
    case OD_ERR_CONFIG: return "config";
    case OD_ERR_TOO_LARGE: return "too_large";
    case OD_ERR_UNSUPPORTED: return "unsupported";
    case OD_ERR_CLOSED: return "closed";
    default: return "unknown";
    }
}

#ifdef __cplusplus
}
#endif
#endif /* ORDERD_STATUS_H */
