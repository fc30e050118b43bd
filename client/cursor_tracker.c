/* cursor_tracker: see cursor_tracker.h for the rule. The ranges array is
 * kept sorted, disjoint and non-adjacent, and every range starts above
 * seq + 1 (a range touching S is folded into S at once), so "seen" is
 * "<= S or inside one range" and a new seq touches at most two ranges. */
#include "cursor_tracker.h"

#include <string.h>

void cursor_tracker_init(cursor_tracker *t)
{
    memset(t, 0, sizeof *t);
}

/* ---- ranges ------------------------------------------------------------ */

static void remove_range(cursor_tracker *t, size_t i)
{
    memmove(&t->ranges[i], &t->ranges[i + 1], (t->n_ranges - i - 1) * sizeof t->ranges[0]);
    t->n_ranges--;
}

/* Index of the first range whose lo is above seq (n_ranges if none):
 * binary search, the array is sorted by lo. */
static size_t first_range_above(const cursor_tracker *t, uint64_t seq)
{
    size_t lo = 0, hi = t->n_ranges;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ranges[mid].lo > seq)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* Restores the invariant after S moved: ranges entirely <= S go, and a range
 * that now touches S (lo <= S + 1) is folded into it. */
static void fold_into_cursor(cursor_tracker *t)
{
    while (t->n_ranges > 0) {
        cursor_range r = t->ranges[0];
        if (t->seq != UINT64_MAX && r.lo > t->seq + 1)
            break;
        if (r.hi > t->seq)
            t->seq = r.hi;
        remove_range(t, 0);
    }
}

static uint64_t range_len(cursor_range r)
{
    return r.hi - r.lo + 1;
}

/* Records an unseen seq > S + 1: extends or joins neighbours, or opens a
 * new range, forgetting the highest one when the array is full. */
static void insert_seq(cursor_tracker *t, uint64_t seq)
{
    size_t next = first_range_above(t, seq);
    bool joins_prev = next > 0 && t->ranges[next - 1].hi + 1 == seq;
    bool joins_next = next < t->n_ranges && t->ranges[next].lo == seq + 1;

    if (joins_prev && joins_next) {
        t->ranges[next - 1].hi = t->ranges[next].hi;
        remove_range(t, next);
        return;
    }
    if (joins_prev) {
        t->ranges[next - 1].hi = seq;
        return;
    }
    if (joins_next) {
        t->ranges[next].lo = seq;
        return;
    }
    if (t->n_ranges == CURSOR_TRACKER_MAX_RANGES) {
        /* Full: keep the knowledge nearest to S, which is what lets S move. */
        if (next == t->n_ranges) {
            t->forgotten++;
            return;
        }
        t->forgotten += range_len(t->ranges[t->n_ranges - 1]);
        t->n_ranges--;
    }
    memmove(&t->ranges[next + 1], &t->ranges[next], (t->n_ranges - next) * sizeof t->ranges[0]);
    t->ranges[next] = (cursor_range){seq, seq};
    t->n_ranges++;
}

/* ---- observing seqs ---------------------------------------------------- */

bool cursor_tracker_seen(const cursor_tracker *t, uint64_t seq)
{
    if (seq <= t->seq)
        return true;
    size_t next = first_range_above(t, seq);
    return next > 0 && t->ranges[next - 1].hi >= seq;
}

cursor_observe_result cursor_tracker_observe(cursor_tracker *t, uint64_t seq)
{
    if (seq == 0)
        return CURSOR_INVALID;
    if (cursor_tracker_seen(t, seq))
        return CURSOR_DUPLICATE;
    if (seq == t->seq + 1) {
        t->seq = seq;
        fold_into_cursor(t);
    } else {
        insert_seq(t, seq);
    }
    return CURSOR_NEW;
}

/* ---- epochs, subscriptions and snapshots ------------------------------- */

static bool epoch_fits(const char *epoch)
{
    return strnlen(epoch, CURSOR_EPOCH_MAX) < CURSOR_EPOCH_MAX;
}

static void set_epoch_string(cursor_tracker *t, const char *epoch)
{
    size_t len = strlen(epoch);   /* checked by epoch_fits() */
    memcpy(t->epoch, epoch, len + 1);
}

bool cursor_tracker_start(cursor_tracker *t, uint64_t seq, const char *epoch)
{
    if (!epoch)
        epoch = "";
    if (!epoch_fits(epoch))
        return false;
    /* Knowledge above S is only comparable within one epoch. */
    if (t->epoch[0] && epoch[0] && strcmp(t->epoch, epoch) != 0)
        t->n_ranges = 0;
    set_epoch_string(t, epoch);
    t->seq = seq;
    t->snapshot_pending = false;
    fold_into_cursor(t);
    return true;
}

void cursor_tracker_begin_snapshot(cursor_tracker *t)
{
    t->snapshot_pending = true;
}

void cursor_tracker_replay_started(cursor_tracker *t)
{
    t->snapshot_pending = false;
}

bool cursor_tracker_set_epoch(cursor_tracker *t, const char *epoch, bool *changed)
{
    if (changed)
        *changed = false;
    if (!epoch || !epoch[0] || !epoch_fits(epoch))
        return false;
    if (t->epoch[0] && strcmp(t->epoch, epoch) != 0) {
        t->seq = 0;
        t->n_ranges = 0;
        if (changed)
            *changed = true;
    }
    set_epoch_string(t, epoch);
    return true;
}

bool cursor_tracker_snapshot_done(cursor_tracker *t, uint64_t seq, const char *epoch)
{
    if (!cursor_tracker_set_epoch(t, epoch, NULL))
        return false;
    t->seq = seq;
    t->snapshot_pending = false;
    fold_into_cursor(t);
    return true;
}

bool cursor_tracker_get(const cursor_tracker *t, uint64_t *seq_out,
                        char epoch_out[CURSOR_EPOCH_MAX])
{
    if (!t->epoch[0] || t->snapshot_pending)
        return false;
    if (seq_out)
        *seq_out = t->seq;
    if (epoch_out)
        memcpy(epoch_out, t->epoch, strlen(t->epoch) + 1);
    return true;
}

uint64_t cursor_tracker_pending_seqs(const cursor_tracker *t)
{
    uint64_t total = 0;
    for (size_t i = 0; i < t->n_ranges; i++) {
        uint64_t len = range_len(t->ranges[i]);
        if (len == 0 || total > UINT64_MAX - len)   /* len 0: the full 2^64 range */
            return UINT64_MAX;
        total += len;
    }
    return total;
}
