/*
 * odm_b64.h - base64url without padding, for the storage backends' keyset
 * cursors (library odmod_tables). Not part of the ABI.
 *
 * OpenSSL's EVP_EncodeBlock/DecodeBlock speak standard base64 with
 * padding and decode leniently; a cursor must be URL-safe and decode
 * strictly (a cursor the backend did not produce is OD_ERR_INVALID, see
 * storage.h), so this small codec is ours. Pure functions, any thread.
 */
#ifndef ODM_B64_H
#define ODM_B64_H

#include <stddef.h>

/* Characters odm_b64url_encode() writes for n bytes (without the NUL). */
#define ODM_B64URL_LEN(n) ((n) / 3 * 4 + ((n) % 3 ? (n) % 3 + 1 : 0))

/* Encode n bytes into out (ODM_B64URL_LEN(n) + 1 bytes, NUL-terminated).
 * Returns the length written. */
size_t odm_b64url_encode(const void *in, size_t n, char *out);

/* Decode n characters into out (cap bytes, no NUL added). Strict: the
 * URL-safe alphabet only, no padding, unused trailing bits zero. Returns
 * the decoded length, or -1 for anything an encoder could not produce or
 * that does not fit. */
long odm_b64url_decode(const char *in, size_t n, unsigned char *out, size_t cap);

#endif
