/* utf8: incremental UTF-8 validation (RFC 3629) for WebSocket text messages.
 *
 * A text message may arrive split over many frames, and a frame boundary may
 * fall inside a multi-byte sequence, so the validator keeps the state of a
 * partial sequence between calls. Rejects overlong encodings, surrogates
 * (U+D800..U+DFFF) and code points above U+10FFFF as soon as the offending
 * byte is seen, which is what RFC 6455 section 8.1 asks of a fail-fast
 * endpoint. Pure: no allocation, no globals.
 */
#ifndef NEBULA_UTF8_H
#define NEBULA_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct utf8_validator {
    uint8_t needed;     /* continuation bytes still expected */
    uint8_t lower;      /* allowed range of the next continuation byte */
    uint8_t upper;
} utf8_validator;

void utf8_validator_init(utf8_validator *v);

/* Feeds n more bytes. Returns false as soon as the input cannot be the
 * prefix of valid UTF-8; the validator must then be re-initialised. */
bool utf8_validator_feed(utf8_validator *v, const uint8_t *s, size_t n);

/* True when everything fed so far is complete, valid UTF-8 (no sequence is
 * left half-finished). */
bool utf8_validator_complete(const utf8_validator *v);

/* Convenience for whole buffers: feed + complete. */
bool utf8_is_valid(const uint8_t *s, size_t n);

#endif
