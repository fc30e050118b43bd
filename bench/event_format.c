/* event_format: see event_format.h. */
#include "event_format.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>

static const char hex_digits[] = "0123456789abcdef";

static void put_hex(char *out, uint64_t v, int digits)
{
    for (int i = digits - 1; i >= 0; i--) {
        out[i] = hex_digits[v & 15];
        v >>= 4;
    }
}

/* Lower-case hex digits only; false on anything else. */
static bool get_hex(const char *s, int digits, uint64_t *v)
{
    uint64_t x = 0;
    for (int i = 0; i < digits; i++) {
        char ch = s[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else
            return false;
        x = x << 4 | d;
    }
    *v = x;
    return true;
}

void event_id_write(char out[EVENT_ID_LEN + 1], uint64_t run_id, uint32_t pub, uint64_t counter)
{
    put_hex(out, run_id >> 32, 8);
    out[8] = '-';
    put_hex(out + 9, (run_id >> 16) & 0xffff, 4);
    out[13] = '-';
    out[14] = '4';
    put_hex(out + 15, pub & 0xfff, 3);
    out[18] = '-';
    put_hex(out + 19, 0x8000 | ((pub >> 12) & 0x3fff), 4);
    out[23] = '-';
    put_hex(out + 24, counter & EVENT_COUNTER_MASK, 12);
    out[36] = '\0';
}

enum event_id_kind event_id_parse(const char *s, size_t len, uint64_t run_id, uint32_t *pub,
                                  uint64_t *counter)
{
    uint64_t r_hi, r_lo, p_lo, p_hi, c;
    if (len != EVENT_ID_LEN || s[8] != '-' || s[13] != '-' || s[14] != '4' || s[18] != '-' ||
        s[23] != '-')
        return EVENT_ID_FOREIGN;
    if (!get_hex(s, 8, &r_hi) || !get_hex(s + 9, 4, &r_lo) || !get_hex(s + 15, 3, &p_lo) ||
        !get_hex(s + 19, 4, &p_hi) || !get_hex(s + 24, 12, &c) || (p_hi & 0xc000) != 0x8000)
        return EVENT_ID_FOREIGN;
    if ((r_hi << 16 | r_lo) != run_id >> 16)
        return EVENT_ID_OTHER_RUN;
    *pub = (uint32_t)(p_lo | (p_hi & 0x3fff) << 12);
    *counter = c;
    return EVENT_ID_THIS_RUN;
}

#define DOC_ID_PREFIX "bench-p"

void event_doc_id_write(char out[EVENT_DOC_ID_MAX], long pub, uint64_t n)
{
    snprintf(out, EVENT_DOC_ID_MAX, DOC_ID_PREFIX "%ld-d%" PRIu64, pub, n);
}

/* Decimal digits from *s up to end, at least one, no leading zero but "0";
 * *s moves past them. false if there are none or the value overflows. */
static bool get_decimal(const char **s, const char *end, uint64_t *v)
{
    const char *p = *s;
    uint64_t x = 0;
    while (p < end && *p >= '0' && *p <= '9') {
        unsigned d = (unsigned)(*p - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
        p++;
    }
    if (p == *s || (p - *s > 1 && **s == '0'))
        return false;
    *s = p;
    *v = x;
    return true;
}

bool event_doc_id_parse(const char *s, size_t len, long *pub, uint64_t *n)
{
    const char *end = s + len, *p = s + strlen(DOC_ID_PREFIX);
    uint64_t pv, nv;
    if (len <= strlen(DOC_ID_PREFIX) || memcmp(s, DOC_ID_PREFIX, strlen(DOC_ID_PREFIX)) != 0 ||
        !get_decimal(&p, end, &pv) || pv > LONG_MAX || end - p < 2 || p[0] != '-' || p[1] != 'd')
        return false;
    p += 2;
    if (!get_decimal(&p, end, &nv) || p != end)
        return false;
    *pub = (long)pv;
    *n = nv;
    return true;
}

void event_doc_fill(uint8_t *doc, size_t size, long pub)
{
    char head[96];
    int n = snprintf(head, sizeof head, EVENT_DOC_TS_PREFIX "%0*d\",\"pub\":%ld,\"pad\":\"",
                     EVENT_DOC_TS_DIGITS, 0, pub);
    size_t pad = size - (size_t)n - 2;   /* EVENT_DOC_MIN_SIZE keeps this positive */
    memcpy(doc, head, (size_t)n);
    memset(doc + n, 'x', pad);
    memcpy(doc + n + pad, "\"}", 2);
}
