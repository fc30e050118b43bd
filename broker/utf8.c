/* utf8: the incremental UTF-8 validator behind WebSocket TEXT messages.
 *
 * Checks the well-formed sequences of RFC 3629 section 4, whose table rules
 * out overlongs, surrogates and code points above U+10FFFF by narrowing the
 * range of the byte after the lead. Runs of ASCII (most text on the wire:
 * JSON keys, ids, numbers) are skipped 16 or 8 bytes at a time; a sequence
 * is checked in one go when all of it is in the buffer, and byte by byte,
 * carrying state in the validator, only when a feed ends inside it.
 */
#include "utf8.h"

#include <string.h>

#define CONT_MIN 0x80u   /* any continuation byte is 10xxxxxx */
#define CONT_MAX 0xBFu
#define HIGH_BITS 0x8080808080808080ull

/* An impossible state (empty range, one byte still expected) used after a
 * failure, so that a caller forgetting to re-initialise keeps failing. */
static void poison(utf8_validator *v)
{
    v->needed = 1;
    v->lower = 0xFF;
    v->upper = 0x00;
}

static bool word_is_ascii(const uint8_t *s)
{
    uint64_t w;
    memcpy(&w, s, sizeof w);   /* alignment-safe load; byte order irrelevant */
    return (w & HIGH_BITS) == 0;
}

/* Returns the index of the first non-ASCII byte of s[i..n), or n. */
static size_t skip_ascii(const uint8_t *s, size_t i, size_t n)
{
    while (n - i >= 16) {
        uint64_t a, b;
        memcpy(&a, s + i, sizeof a);
        memcpy(&b, s + i + 8, sizeof b);
        if (((a | b) & HIGH_BITS) != 0)
            break;
        i += 16;
    }
    if (n - i >= 8 && word_is_ascii(s + i))
        i += 8;
    while (i < n && s[i] < 0x80)
        i++;
    return i;
}

/* Classifies a non-ASCII lead byte (RFC 3629 section 4): how many
 * continuation bytes follow and the range the first of them must lie in.
 * The narrowed ranges are what reject overlongs (E0 80..9F, F0 80..8F),
 * surrogates (ED A0..BF) and code points past U+10FFFF (F4 90..BF); C0, C1
 * and F5..FF can only start overlong or out-of-range sequences. */
static bool start_sequence(uint8_t lead, utf8_validator *v)
{
    uint8_t needed, lower = CONT_MIN, upper = CONT_MAX;
    if (lead < 0xC2)
        return false;            /* stray continuation byte, or overlong C0/C1 */
    if (lead <= 0xDF) {
        needed = 1;
    } else if (lead <= 0xEF) {
        needed = 2;
        if (lead == 0xE0)
            lower = 0xA0;        /* below is an overlong 3-byte form */
        else if (lead == 0xED)
            upper = 0x9F;        /* above are the surrogates U+D800..U+DFFF */
    } else if (lead <= 0xF4) {
        needed = 3;
        if (lead == 0xF0)
            lower = 0x90;        /* below is an overlong 4-byte form */
        else if (lead == 0xF4)
            upper = 0x8F;        /* above is past U+10FFFF */
    } else {
        return false;
    }
    v->needed = needed;
    v->lower = lower;
    v->upper = upper;
    return true;
}

/* Consumes continuation bytes of the open sequence from s[*i..n) one at a
 * time, until it is complete or the input ends: the slow path, for sequences
 * split between two feeds (a frame boundary inside a character). */
static bool continue_sequence(utf8_validator *st, const uint8_t *s, size_t *i, size_t n)
{
    while (st->needed > 0 && *i < n) {
        uint8_t b = s[*i];
        if (b < st->lower || b > st->upper)
            return false;
        st->needed--;
        st->lower = CONT_MIN;
        st->upper = CONT_MAX;
        (*i)++;
    }
    return true;
}

/* The fast path for a sequence entirely within this feed: its continuation
 * bytes s[0..needed) are checked in one go. */
static bool whole_sequence_ok(const utf8_validator *st, const uint8_t *s)
{
    if (s[0] < st->lower || s[0] > st->upper)
        return false;
    for (uint8_t k = 1; k < st->needed; k++)
        if ((s[k] & 0xC0u) != 0x80u)
            return false;
    return true;
}

static bool feed(utf8_validator *st, const uint8_t *s, size_t n)
{
    size_t i = 0;
    if (!continue_sequence(st, s, &i, n))
        return false;
    while (i < n) {
        if (s[i] < 0x80) {
            i = skip_ascii(s, i, n);
            continue;
        }
        if (!start_sequence(s[i], st))
            return false;
        i++;
        if (n - i >= st->needed) {
            if (!whole_sequence_ok(st, s + i))
                return false;
            i += st->needed;
            utf8_validator_init(st);
        } else if (!continue_sequence(st, s, &i, n)) {
            return false;
        }
    }
    return true;
}

void utf8_validator_init(utf8_validator *v)
{
    v->needed = 0;
    v->lower = CONT_MIN;
    v->upper = CONT_MAX;
}

bool utf8_validator_feed(utf8_validator *v, const uint8_t *s, size_t n)
{
    utf8_validator st = *v;   /* a local copy the compiler can keep in registers */
    if (!feed(&st, s, n)) {
        poison(v);
        return false;
    }
    *v = st;
    return true;
}

bool utf8_validator_complete(const utf8_validator *v)
{
    return v->needed == 0;
}

bool utf8_is_valid(const uint8_t *s, size_t n)
{
    utf8_validator v;
    utf8_validator_init(&v);
    return utf8_validator_feed(&v, s, n) && utf8_validator_complete(&v);
}
