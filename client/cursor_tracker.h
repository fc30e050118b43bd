/* cursor_tracker: the client's position in one collection's log, pure (no
 * I/O, no allocation, no globals).
 *
 * The cursor of a collection is the highest seq S such that every seq <= S
 * has been seen by this client, in one of three ways:
 *   - as an entry of a server Events message (someone else's event, or a
 *     replay of any event);
 *   - as the seq of this client's own ACCEPTED or DUPLICATE push result (the
 *     server never sends a client its own accepted events live, so these
 *     results are the only way the client learns those seqs);
 *   - covered by a snapshot: the final Snapshot page's cursor sets S.
 * A seq <= S, or one already seen above S, is a duplicate: the client drops
 * such events instead of delivering them to the application twice.
 *
 * Knowledge above S that cannot be folded into S yet (e.g. Events seq 7
 * arriving before the PushResult for our own seq 6) is kept as a sorted set
 * of disjoint, non-adjacent ranges [lo, hi], all with lo > S + 1. Ranges
 * rather than single seqs because one open gap (our own push in flight)
 * typically has a long run of other clients' events behind it: each gap costs
 * one range, however busy the collection.
 *
 * Bound: at most CURSOR_TRACKER_MAX_RANGES ranges (64, i.e. 64 distinct
 * gaps open at once; 1 KiB per collection, inline). When a new seq would need
 * one range more, the highest range is forgotten (or the new seq is not
 * recorded, if it is the highest). Forgetting never moves S, so the cursor
 * stays correct; the cost is that those forgotten seqs, if the server sends
 * them again (a replay after resubscribing from S), are delivered again:
 * at-least-once instead of exactly-once for them. `forgotten` counts them.
 *
 * Epochs: the server's log for a collection has an epoch string that changes
 * when the log is reset or lost. Seqs of different epochs are unrelated, so a
 * change of epoch resets S to 0 and drops every range. The epoch is unknown
 * ("") until the application subscribes with a cursor or the server names it
 * (Subscribed.head, Snapshot.cursor). Seqs recorded while the epoch is
 * unknown are kept when it becomes known (they came from the server's current
 * log).
 */
#ifndef NEBULA_CURSOR_TRACKER_H
#define NEBULA_CURSOR_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CURSOR_TRACKER_MAX_RANGES 64
#define CURSOR_EPOCH_MAX 64   /* bytes of an epoch string, NUL included */

typedef struct cursor_range {
    uint64_t lo, hi;   /* inclusive; lo <= hi */
} cursor_range;

/* Embedded by value in its owner; no dynamic memory, copyable. */
typedef struct cursor_tracker {
    uint64_t seq;                         /* S: every seq <= S was seen */
    char epoch[CURSOR_EPOCH_MAX];         /* "" while unknown */
    bool snapshot_pending;                /* a snapshot was asked for and is not complete */
    size_t n_ranges;
    cursor_range ranges[CURSOR_TRACKER_MAX_RANGES];   /* sorted, disjoint, lo > seq + 1 */
    uint64_t forgotten;                   /* seqs dropped because ranges were full */
} cursor_tracker;

typedef enum cursor_observe_result {
    CURSOR_NEW,         /* not seen before: deliver it */
    CURSOR_DUPLICATE,   /* <= S or already seen above S: drop it */
    CURSOR_INVALID,     /* seq 0: no event has it */
} cursor_observe_result;

/* Empty: seq 0, epoch unknown, nothing pending. */
void cursor_tracker_init(cursor_tracker *t);

/* Records that seq has been seen (an Events entry or an own ACCEPTED /
 * DUPLICATE result) and says whether it was new. */
cursor_observe_result cursor_tracker_observe(cursor_tracker *t, uint64_t seq);

/* Whether seq has been seen (<= S or inside a range); no change. */
bool cursor_tracker_seen(const cursor_tracker *t, uint64_t seq);

/* The application subscribes from a cursor it saved: S = seq, epoch = epoch
 * (NULL or "" for unknown). Ranges above the new S are kept if the epoch is
 * the same (or was unknown), dropped otherwise. Returns false (no change) if
 * the epoch does not fit CURSOR_EPOCH_MAX. */
bool cursor_tracker_start(cursor_tracker *t, uint64_t seq, const char *epoch);

/* The application asked for a snapshot: until cursor_tracker_snapshot_done()
 * the cursor is not a resumable position (cursor_tracker_get() fails). */
void cursor_tracker_begin_snapshot(cursor_tracker *t);

/* The server answered a subscription with a replay after S: the cursor is
 * resumable again (also when a snapshot had been asked for). */
void cursor_tracker_replay_started(cursor_tracker *t);

/* The server named the collection's epoch (Subscribed.head). A different
 * known epoch resets S to 0 and drops every range; *changed (optional) says
 * whether that happened. Returns false (no change) if the epoch is empty or
 * does not fit CURSOR_EPOCH_MAX. */
bool cursor_tracker_set_epoch(cursor_tracker *t, const char *epoch, bool *changed);

/* The final Snapshot page arrived with its cursor: epoch as in
 * cursor_tracker_set_epoch(), then S = seq exactly (the snapshot is the
 * truth: the application's state is now the snapshot's), ranges <= S are
 * dropped and ranges above are kept (own results that arrived meanwhile).
 * Returns false (no change) on an empty or oversized epoch. */
bool cursor_tracker_snapshot_done(cursor_tracker *t, uint64_t seq, const char *epoch);

/* The resumable cursor: false while the epoch is unknown or a snapshot is
 * pending. epoch_out receives CURSOR_EPOCH_MAX bytes at most. */
bool cursor_tracker_get(const cursor_tracker *t, uint64_t *seq_out,
                        char epoch_out[CURSOR_EPOCH_MAX]);

/* Number of seqs above S that are known (sum of range lengths); for tests
 * and status. Saturates at UINT64_MAX. */
uint64_t cursor_tracker_pending_seqs(const cursor_tracker *t);

#ifdef __cplusplus
}
#endif

#endif
