/*
 * odm_b64.c - see odm_b64.h.
 */
#include "odm_b64.h"

#include <stdint.h>
#include <string.h>

static const char B64URL[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

size_t odm_b64url_encode(const void *in, size_t n, char *out)
{
    const unsigned char *b = in;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)b[i + 1] << 8;
        if (i + 2 < n)
            v |= b[i + 2];
        out[o++] = B64URL[v >> 18];
        out[o++] = B64URL[(v >> 12) & 63];
        if (i + 1 < n)
            out[o++] = B64URL[(v >> 6) & 63];
        if (i + 2 < n)
            out[o++] = B64URL[v & 63];
    }
    out[o] = '\0';
    return o;
}

static int digit(char ch)
{
    const char *p = ch ? strchr(B64URL, ch) : NULL;
    return p ? (int)(p - B64URL) : -1;
}

long odm_b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap)
{
    if (n % 4 == 1 || (n / 4) * 3 + (n % 4 ? n % 4 - 1 : 0) > cap)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        int v = digit(in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        if (i % 4 == 3) {
            out[o++] = (unsigned char)(acc >> 16);
            out[o++] = (unsigned char)(acc >> 8);
            out[o++] = (unsigned char)acc;
            acc = 0;
        }
    }
    /* Non-canonical input (leftover bits set) would give a second spelling
     * of the same cursor. */
    if ((n % 4 == 2 && (acc & 0xf)) || (n % 4 == 3 && (acc & 0x3)))
        return -1;
    if (n % 4 == 2) {
        out[o++] = (unsigned char)(acc >> 4);
    } else if (n % 4 == 3) {
        out[o++] = (unsigned char)(acc >> 10);
        out[o++] = (unsigned char)(acc >> 2);
    }
    return (long)o;
}
