/*
 * log.c - structured logging: one JSON object per line on stderr.
 *
 *   {"ts":"2026-11-26T10:00:00.123Z","level":"info","module":"core","msg":"..."}
 *
 * Reads no config key (main sets the level from server.log_level). Owns no
 * thread. Any thread may log: a line is assembled in a buffer and handed to
 * the kernel with a single write(2), so lines from concurrent threads never
 * interleave (stderr is unbuffered, stdio would split long lines).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

#define LOG_LINE_MAX 4096 /* longer messages are truncated, marked with "..." */

/* Written by main before threads exist, read by every thread: relaxed is enough. */
static atomic_int log_level = OD_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void od_log_set_level(int level)
{
    if (level < OD_LOG_ERROR)
        level = OD_LOG_ERROR;
    if (level > OD_LOG_DEBUG)
        level = OD_LOG_DEBUG;
    atomic_store_explicit(&log_level, level, memory_order_relaxed);
}

int od_log_level(void)
{
    return atomic_load_explicit(&log_level, memory_order_relaxed);
}

/* Write all of buf; a short write to a pipe is retried, EINTR too. */
static void write_all(const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDERR_FILENO, buf, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return; /* nowhere left to report it */
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* A bounded output buffer: appends stop at the end instead of overflowing. */
typedef struct line_buf {
    char *p;
    size_t len, cap;
    int truncated;
} line_buf;

/* All or nothing, so an escape sequence is never cut in half. */
static void put_bytes(line_buf *b, const char *s, size_t n)
{
    if (b->truncated || n > b->cap - b->len) {
        b->truncated = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void put_str(line_buf *b, const char *s)
{
    put_bytes(b, s, strlen(s));
}

/* JSON string body (without quotes): escape quote, backslash and every
 * control character; bytes >= 0x80 pass through (UTF-8). */
static void put_escaped(line_buf *b, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            put_bytes(b, esc, 2);
        } else if (c == '\n') {
            put_bytes(b, "\\n", 2);
        } else if (c == '\t') {
            put_bytes(b, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            put_bytes(b, esc, 6);
        } else {
            put_bytes(b, s, 1);
        }
    }
}

/* UTC "2026-11-26T10:00:00.123Z" without gmtime_r, which takes glibc's
 * global tz lock on every call. Days-to-civil after H. Hinnant. */
void od_log_timestamp(char *out, size_t cap)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long secs = (long long)ts.tv_sec, days = secs / 86400, sod = secs % 86400;
    long long z = days + 719468, era = z / 146097, doe = z - era * 146097;
    long long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    long long doy = doe - (365 * yoe + yoe / 4 - yoe / 100), mp = (5 * doy + 2) / 153;
    long long d = doy - (153 * mp + 2) / 5 + 1, m = mp < 10 ? mp + 3 : mp - 9;
    long long y = yoe + era * 400 + (m <= 2);
    snprintf(out, cap, "%04lld-%02lld-%02lldT%02lld:%02lld:%02lld.%03ldZ", y, m, d, sod / 3600,
             sod / 60 % 60, sod % 60, ts.tv_nsec / 1000000);
}

void od_vlogf(const char *module, int level, const char *fmt, va_list ap)
{
    if (level > od_log_level())
        return;
    if (level < OD_LOG_ERROR)
        level = OD_LOG_ERROR;

    char msg[LOG_LINE_MAX];
    vsnprintf(msg, sizeof msg, fmt, ap);

    char ts[96];
    od_log_timestamp(ts, sizeof ts);

    /* Escaping can grow the message 6x; reserve the tail for the closing
     * characters so a truncated line is still valid JSON. */
    char out[LOG_LINE_MAX + 256];
    line_buf b = {out, 0, sizeof out - 8, 0};
    put_str(&b, "{\"ts\":\"");
    put_str(&b, ts);
    put_str(&b, "\",\"level\":\"");
    put_str(&b, level_names[level]);
    put_str(&b, "\",\"module\":\"");
    put_escaped(&b, module ? module : "core");
    put_str(&b, "\",\"msg\":\"");
    put_escaped(&b, msg);
    if (b.truncated) {
        /* Do not leave half a UTF-8 sequence before the cut mark. */
        while (b.len > 0 && ((unsigned char)out[b.len - 1] & 0xc0) == 0x80)
            b.len--;
        if (b.len > 0 && ((unsigned char)out[b.len - 1] & 0xc0) == 0xc0)
            b.len--;
    }
    int cut = b.truncated;
    b.truncated = 0;
    b.cap = sizeof out;
    put_str(&b, cut ? "...\"}\n" : "\"}\n");
    write_all(out, b.len);
}

void od_logf(const char *module, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    od_vlogf(module, level, fmt, ap);
    va_end(ap);
}

void od_log_json_line(const char *json, size_t len)
{
    char stack[2048];
    char *line = len + 1 <= sizeof stack ? stack : malloc(len + 1);
    if (!line)
        return;
    memcpy(line, json, len);
    line[len] = '\n';
    write_all(line, len + 1);
    if (line != stack)
        free(line);
}
