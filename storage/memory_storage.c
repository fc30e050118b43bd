/* memory_storage: the in-memory implementation of sync_storage.h.
 *
 * Layout. A table of collections keyed by (tenant, collection), guarded by a
 * rwlock that only covers the table itself: a collection, once created, is
 * never removed before destroy, so a pointer to it stays valid without that
 * lock. Each collection has its own mutex over its log, its documents and
 * its idempotency records; calls on different collections run in parallel.
 *
 * An accepted event is one immutable, reference-counted allocation (an
 * event_block: the sync_event plus copies of its strings and data). The log
 * holds one reference, the document it last wrote holds one, and every call
 * that passes it to a callback holds one until the callback returns, so
 * callbacks run without any lock (they may call the storage again) and a
 * concurrent trim can never free what a callback is reading.
 *
 * Ordering. Seqs are assigned under the collection mutex and the listener
 * is called before that mutex is released, which is what makes listener
 * calls ordered and never concurrent per collection (see memory_storage.h
 * for what the listener may not do).
 *
 * Lock order: collection mutex -> listener rwlock (read), and collection
 * mutex -> usage mutex (the global totals behind the size caps, held only
 * for arithmetic). The table rwlock is never held while waiting for
 * another lock, and no lock is held while a completion callback runs.
 */
#include "memory_storage.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

/* uthash must not exit() the process when out of memory: with
 * HASH_NONFATAL_OOM a failed add leaves the item out, with hh.tbl == NULL. */
#define HASH_NONFATAL_OOM 1
#include <uthash.h>

#define EPOCH_RANDOM_BYTES 16   /* 128 bits, written as 32 hex digits */
#define RING_MIN_CAPACITY 16
#define KEY_INLINE_BYTES 256
/* Keeps every size computed from data_len far from overflowing. */
#define MAX_DATA_LEN (SIZE_MAX / 4)

_Static_assert(2 * EPOCH_RANDOM_BYTES + 1 <= SYNC_EPOCH_MAX, "epoch does not fit sync_head");

/* One accepted event, strings and data in the same allocation. Immutable
 * once created; freed by the last block_unref, on whichever thread. */
typedef struct event_block {
    atomic_uint refs;
    sync_event ev;              /* pointers into bytes[] */
    char bytes[];
} event_block;

/* The current version of one document: the event that wrote it. */
typedef struct document {
    UT_hash_handle hh;          /* collection.documents, key = id */
    event_block *version;       /* one reference */
    char id[];
} document;

/* An accepted event id, kept for idempotency. Records are only ever added
 * in seq order, and uthash keeps insertion order, so iterating
 * collection.ids goes from the oldest seq to the newest. */
typedef struct id_record {
    UT_hash_handle hh;          /* collection.ids, key = id */
    uint64_t seq;
    int64_t timestamp_ms;       /* of the event, for clear_events_before */
    char id[];
} id_record;

/* The retained log: a ring of blocks, capacity a power of two. */
typedef struct event_ring {
    event_block **slots;
    size_t capacity;
    size_t start;
    size_t count;
} event_ring;

typedef struct collection {
    UT_hash_handle hh;          /* memory_storage.collections, key = key[] */
    pthread_mutex_t lock;
    /* Guarded by lock. */
    event_ring log;             /* entry i has seq first_seq + i */
    uint64_t first_seq;
    uint64_t last_seq;
    document *documents;
    id_record *ids;             /* retained events' ids, then remembered ones of trimmed events */
    /* Immutable after creation. */
    char epoch[SYNC_EPOCH_MAX];
    const char *tenant;         /* into key[] */
    const char *name;           /* into key[] */
    char key[];                 /* tenant '\0' name '\0': injective, as names hold no NUL */
} collection;

typedef struct memory_storage {
    size_t max_events;
    size_t max_bytes;
    pthread_rwlock_t table_lock;        /* guards the collections table, not their contents */
    collection *collections;
    pthread_rwlock_t listener_lock;     /* read-held while the listener runs */
    sync_listener_fn listener;
    void *listener_data;
    /* The caps are global, so deciding what to trim for room and taking
     * that room must see the totals unchanged: one short lock, held only
     * for the arithmetic (see usage_take_room). */
    pthread_mutex_t usage_lock;
    uint64_t retained_events;           /* guarded by usage_lock */
    uint64_t retained_bytes;            /* guarded by usage_lock */
    /* Plain counters. Relaxed atomics: they count, they publish no data. */
    atomic_uint_fast64_t collection_count;
    atomic_uint_fast64_t document_count;
    atomic_uint_fast64_t remembered_ids;
} memory_storage;

/* ---- event blocks ------------------------------------------------------- */

static bool event_carries_data(sync_event_type type)
{
    return type == SYNC_EVENT_INSERT || type == SYNC_EVENT_UPDATE;
}

static const char *client_id_of(const sync_event *ev)
{
    return ev->client_id != NULL ? ev->client_id : "";
}

static size_t stored_data_len(const sync_event *ev)
{
    return event_carries_data(ev->type) ? ev->data_len : 0;
}

static size_t event_block_size(const sync_event *ev)
{
    return sizeof(event_block) + strlen(ev->id) + 1 + strlen(ev->document_id) + 1 +
           strlen(client_id_of(ev)) + 1 + stored_data_len(ev);
}

/* What one retained event costs, as counted against max_bytes and reported
 * as retained_bytes: its block, its log slot and its id record. Left out:
 * malloc's own overhead (on 64-bit glibc an 8-byte header and rounding to
 * 16, for each of the two allocations), hash buckets, and the document
 * record (documents are not log entries; they stay when the log is
 * trimmed).
 *
 * Measured (gcc 12 -O2, glibc 2.36, x86-64; mallinfo2().uordblks around
 * storing 100,000 events in one collection): an event with 200 bytes of
 * data, a 36-byte UUID id and client id and a 10-byte document id is
 * counted as 498 bytes (block 96 + 85 string bytes + 200 data, log slot 8,
 * id record 72 + 37) and really costs 528 bytes while retained (malloc
 * chunk rounding, ring and hash-bucket slack). An event that creates a
 * document costs 96 bytes more (its record and buckets). A document keeps
 * the block of its current version alive after that event leaves the log. */
static size_t event_cost(const sync_event *ev)
{
    return event_block_size(ev) + sizeof(event_block *) + sizeof(id_record) + strlen(ev->id) + 1;
}

static const char *copy_into(char **cursor, const char *s, size_t size)
{
    char *dst = *cursor;
    memcpy(dst, s, size);
    *cursor += size;
    return dst;
}

/* A block holding a copy of ev with the given seq, refcount 1. */
static event_block *event_block_new(const sync_event *ev, uint64_t seq)
{
    event_block *b = malloc(event_block_size(ev));
    if (b == NULL)
        return NULL;
    atomic_init(&b->refs, 1);
    char *cursor = b->bytes;
    b->ev = *ev;
    b->ev.id = copy_into(&cursor, ev->id, strlen(ev->id) + 1);
    b->ev.document_id = copy_into(&cursor, ev->document_id, strlen(ev->document_id) + 1);
    b->ev.client_id = copy_into(&cursor, client_id_of(ev), strlen(client_id_of(ev)) + 1);
    b->ev.data_len = stored_data_len(ev);
    b->ev.data = NULL;
    if (b->ev.data_len > 0)
        b->ev.data = (const uint8_t *)copy_into(&cursor, (const char *)ev->data, b->ev.data_len);
    b->ev.seq = seq;
    return b;
}

/* Only called by someone who already holds a reference (directly or through
 * a structure guarded by a lock it holds), hence relaxed. */
static event_block *block_ref(event_block *b)
{
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

static void block_unref(event_block *b)
{
    if (b != NULL && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
        free(b);
}

static sync_document document_of(const event_block *b)
{
    sync_document d = {
        .document_id = b->ev.document_id,
        .data = b->ev.data,
        .data_len = b->ev.data_len,
        .seq = b->ev.seq,
        .hlc = b->ev.hlc,
        .client_id = b->ev.client_id,
        .deleted = b->ev.type == SYNC_EVENT_DELETE,
    };
    return d;
}

/* ---- the log ring -------------------------------------------------------- */

static event_block *ring_at(const event_ring *r, size_t i)
{
    return r->slots[(r->start + i) & (r->capacity - 1)];
}

static bool ring_resize(event_ring *r, size_t capacity)
{
    event_block **slots = malloc(capacity * sizeof *slots);
    if (slots == NULL)
        return false;
    for (size_t i = 0; i < r->count; i++)
        slots[i] = ring_at(r, i);
    free(r->slots);
    r->slots = slots;
    r->capacity = capacity;
    r->start = 0;
    return true;
}

static bool ring_reserve_one(event_ring *r)
{
    if (r->count < r->capacity)
        return true;
    return ring_resize(r, r->capacity > 0 ? r->capacity * 2 : RING_MIN_CAPACITY);
}

static void ring_push(event_ring *r, event_block *b)
{
    r->slots[(r->start + r->count) & (r->capacity - 1)] = b;
    r->count++;
}

static event_block *ring_pop_front(event_ring *r)
{
    event_block *b = r->slots[r->start];
    r->start = (r->start + 1) & (r->capacity - 1);
    r->count--;
    /* Give memory back after a big trim; halving only below a quarter full
     * leaves the ring half full, so push/pop at the edge cannot thrash. On
     * failure the bigger ring simply stays. */
    if (r->capacity > RING_MIN_CAPACITY && r->count < r->capacity / 4)
        (void)ring_resize(r, r->capacity / 2);
    return b;
}

/* ---- usage accounting ----------------------------------------------------- */

/* Takes room for one more event of `cost` bytes in c. If the caps leave no
 * room, as many of c's oldest events as needed are counted out here, under
 * the same lock, and *trim says how many the caller must then drop (they
 * are no longer counted). False, with nothing counted out, when even all
 * of c's log would not make room: better refuse the event than trim the
 * log away for nothing. Caller holds c->lock, so c's log cannot change in
 * between. */
static bool usage_take_room(memory_storage *ms, const collection *c, size_t cost, size_t *trim)
{
    pthread_mutex_lock(&ms->usage_lock);
    uint64_t events = ms->retained_events + 1;
    uint64_t bytes = ms->retained_bytes + cost;
    size_t n = 0;
    while ((events > ms->max_events || bytes > ms->max_bytes) && n < c->log.count) {
        events--;
        bytes -= event_cost(&ring_at(&c->log, n)->ev);
        n++;
    }
    bool fits = events <= ms->max_events && bytes <= ms->max_bytes;
    if (fits) {
        ms->retained_events = events;
        ms->retained_bytes = bytes;
    }
    pthread_mutex_unlock(&ms->usage_lock);
    *trim = fits ? n : 0;
    return fits;
}

static void usage_give_back(memory_storage *ms, uint64_t events, uint64_t bytes)
{
    pthread_mutex_lock(&ms->usage_lock);
    ms->retained_events -= events;
    ms->retained_bytes -= bytes;
    pthread_mutex_unlock(&ms->usage_lock);
}

/* ---- idempotency records ------------------------------------------------ */

static id_record *id_record_new(const char *id, uint64_t seq, int64_t timestamp_ms)
{
    size_t size = strlen(id) + 1;
    id_record *r = malloc(sizeof *r + size);
    if (r == NULL)
        return NULL;
    memset(&r->hh, 0, sizeof r->hh);
    r->seq = seq;
    r->timestamp_ms = timestamp_ms;
    memcpy(r->id, id, size);
    return r;
}

static void id_record_delete(collection *c, id_record *r)
{
    HASH_DEL(c->ids, r);
    free(r);
}

static void forget_id(collection *c, const char *id)
{
    id_record *r;
    HASH_FIND_STR(c->ids, id, r);
    if (r != NULL)
        id_record_delete(c, r);
}

/* Keeps the id of an event the size cap has just trimmed (its record stays
 * in c->ids) within the global bound of max_events remembered ids: c's own
 * oldest remembered ids make way first, and when c has none, this id is
 * forgotten instead. The count only ever rises by compare-and-swap below
 * the bound, so the bound holds at every instant. Remembered ids are the
 * records with seq < first_seq, at the front of c->ids; all but this one
 * are counted already. Caller holds c->lock. */
static void remember_trimmed_id(memory_storage *ms, collection *c, const event_block *b)
{
    uint_fast64_t n = atomic_load_explicit(&ms->remembered_ids, memory_order_relaxed);
    for (;;) {
        if (n < ms->max_events) {
            if (atomic_compare_exchange_weak_explicit(&ms->remembered_ids, &n, n + 1,
                                                      memory_order_relaxed, memory_order_relaxed))
                return;
            continue;   /* n now holds the current count */
        }
        id_record *oldest = c->ids;
        if (oldest == NULL || oldest->seq >= b->ev.seq) {
            forget_id(c, b->ev.id);
            return;
        }
        id_record_delete(c, oldest);
        n = atomic_fetch_sub_explicit(&ms->remembered_ids, 1, memory_order_relaxed) - 1;
    }
}

static void forget_remembered_ids_before(memory_storage *ms, collection *c, int64_t before_ms)
{
    id_record *r = c->ids;
    while (r != NULL && r->seq < c->first_seq) {
        id_record *next = r->hh.next;
        if (r->timestamp_ms < before_ms) {
            id_record_delete(c, r);
            atomic_fetch_sub_explicit(&ms->remembered_ids, 1, memory_order_relaxed);
        }
        r = next;
    }
}

/* ---- documents ------------------------------------------------------------ */

static document *document_new(const char *id)
{
    size_t size = strlen(id) + 1;
    document *d = malloc(sizeof *d + size);
    if (d == NULL)
        return NULL;
    memset(&d->hh, 0, sizeof d->hh);
    d->version = NULL;
    memcpy(d->id, id, size);
    return d;
}

/* ---- collections ---------------------------------------------------------- */

static bool epoch_generate(char out[SYNC_EPOCH_MAX])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[EPOCH_RANDOM_BYTES];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return false;
    for (size_t i = 0; i < sizeof raw; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 0x0f];
    }
    out[2 * sizeof raw] = '\0';
    return true;
}

/* The table key of (tenant, name); inline for the usual short names. */
typedef struct collection_key {
    char *bytes;
    size_t len;
    size_t tenant_len;
    char inline_bytes[KEY_INLINE_BYTES];
} collection_key;

static bool collection_key_build(collection_key *k, const char *tenant, const char *name)
{
    size_t name_len = strlen(name);
    k->tenant_len = strlen(tenant);
    k->len = k->tenant_len + 1 + name_len + 1;
    k->bytes = k->len <= sizeof k->inline_bytes ? k->inline_bytes : malloc(k->len);
    if (k->bytes == NULL)
        return false;
    memcpy(k->bytes, tenant, k->tenant_len + 1);
    memcpy(k->bytes + k->tenant_len + 1, name, name_len + 1);
    return true;
}

static void collection_key_release(collection_key *k)
{
    if (k->bytes != k->inline_bytes)
        free(k->bytes);
}

static collection *collection_new(const collection_key *k)
{
    collection *c = calloc(1, sizeof *c + k->len);
    if (c == NULL)
        return NULL;
    if (!epoch_generate(c->epoch) || pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c);
        return NULL;
    }
    memcpy(c->key, k->bytes, k->len);
    c->tenant = c->key;
    c->name = c->key + k->tenant_len + 1;
    c->first_seq = 1;
    return c;
}

static void collection_free(collection *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->log.count; i++)
        block_unref(ring_at(&c->log, i));
    free(c->log.slots);
    document *d, *dtmp;
    HASH_ITER(hh, c->documents, d, dtmp) {
        HASH_DEL(c->documents, d);
        block_unref(d->version);
        free(d);
    }
    id_record *r, *rtmp;
    HASH_ITER(hh, c->ids, r, rtmp) {
        id_record_delete(c, r);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

static collection *collection_find(memory_storage *ms, const collection_key *k)
{
    collection *c;
    pthread_rwlock_rdlock(&ms->table_lock);
    HASH_FIND(hh, ms->collections, k->bytes, k->len, c);
    pthread_rwlock_unlock(&ms->table_lock);
    return c;
}

static collection *collection_insert(memory_storage *ms, const collection_key *k)
{
    /* Built before taking the lock (RAND_bytes is not free); thrown away if
     * another thread created the collection meanwhile. */
    collection *fresh = collection_new(k);
    if (fresh == NULL)
        return NULL;
    collection *c;
    pthread_rwlock_wrlock(&ms->table_lock);
    HASH_FIND(hh, ms->collections, k->bytes, k->len, c);
    if (c == NULL) {
        HASH_ADD_KEYPTR(hh, ms->collections, fresh->key, k->len, fresh);
        if (fresh->hh.tbl != NULL) {
            c = fresh;
            fresh = NULL;
            atomic_fetch_add_explicit(&ms->collection_count, 1, memory_order_relaxed);
        }
    }
    pthread_rwlock_unlock(&ms->table_lock);
    collection_free(fresh);
    return c;
}

/* The collection, created (with its epoch) when first touched: the contract
 * gives never-written collections an epoch already, and it must not change
 * when they are first written. NULL when out of memory or randomness. */
static collection *collection_get(memory_storage *ms, const char *tenant, const char *name)
{
    collection_key k;
    if (!collection_key_build(&k, tenant, name))
        return NULL;
    collection *c = collection_find(ms, &k);
    if (c == NULL)
        c = collection_insert(ms, &k);
    collection_key_release(&k);
    return c;
}

/* Caller holds c->lock. */
static sync_head collection_head(const collection *c)
{
    sync_head h = {.first_seq = c->first_seq, .last_seq = c->last_seq};
    memcpy(h.epoch, c->epoch, sizeof h.epoch);
    return h;
}

/* Given to callbacks of calls that failed, so that no callback ever gets a
 * NULL head. */
static const sync_head no_head = {.first_seq = 1, .last_seq = 0, .epoch = ""};

typedef enum trim_kind {
    TRIM_FOR_SPACE,     /* size cap: the id stays remembered (its sender may re-push it) */
    TRIM_FOR_AGE,       /* retention: the id goes with the entry */
} trim_kind;

/* Drops the oldest log entry, which the caller has already uncounted.
 * Caller holds c->lock; the log is not empty. */
static void collection_drop_oldest(memory_storage *ms, collection *c, trim_kind kind)
{
    event_block *b = ring_pop_front(&c->log);
    c->first_seq++;
    if (kind == TRIM_FOR_AGE)
        forget_id(c, b->ev.id);
    else
        remember_trimmed_id(ms, c, b);
    block_unref(b);
}

static uint64_t collection_clear_before(memory_storage *ms, collection *c, int64_t before_ms)
{
    uint64_t dropped = 0, bytes = 0;
    pthread_mutex_lock(&c->lock);
    /* Only a prefix, so that every seq >= first_seq stays retained. */
    while (c->log.count > 0 && ring_at(&c->log, 0)->ev.timestamp_ms < before_ms) {
        bytes += event_cost(&ring_at(&c->log, 0)->ev);
        collection_drop_oldest(ms, c, TRIM_FOR_AGE);
        dropped++;
    }
    forget_remembered_ids_before(ms, c, before_ms);
    pthread_mutex_unlock(&c->lock);
    usage_give_back(ms, dropped, bytes);
    return dropped;
}

/* ---- save_events ---------------------------------------------------------- */

/* What one save call holds until its callbacks have run. */
typedef struct save_batch {
    sync_save_result *results;
    event_block **accepted;     /* one reference each, seq order */
    size_t accepted_count;
    event_block **winners;      /* one reference each: what CONFLICT results point into */
    size_t winner_count;
    sync_event *announced;      /* the listener's array, built from accepted */
} save_batch;

_Static_assert(sizeof(sync_save_result) % _Alignof(event_block *) == 0 &&
                   sizeof(sync_save_result) % _Alignof(sync_event) == 0 &&
                   sizeof(event_block *) % _Alignof(sync_event) == 0,
               "save_batch_init carves its arrays from one block");

/* Everything is allocated before the collection is locked, in one block
 * carved into the four arrays (all of 8-byte-aligned element types): once
 * events are accepted, the listener must hear of them, so nothing after
 * that may fail. */
static bool save_batch_init(save_batch *batch, size_t count)
{
    size_t per_event = sizeof *batch->results + sizeof *batch->accepted +
                       sizeof *batch->winners + sizeof *batch->announced;
    memset(batch, 0, sizeof *batch);
    if (count > SIZE_MAX / per_event)
        return false;
    char *block = calloc(count, per_event);
    if (block == NULL)
        return false;
    batch->results = (sync_save_result *)block;
    batch->accepted = (event_block **)(block + count * sizeof *batch->results);
    batch->winners = batch->accepted + count;
    batch->announced = (sync_event *)(batch->winners + count);
    return true;
}

static void save_batch_release(save_batch *batch)
{
    for (size_t i = 0; i < batch->accepted_count; i++)
        block_unref(batch->accepted[i]);
    for (size_t i = 0; i < batch->winner_count; i++)
        block_unref(batch->winners[i]);
    free(batch->results);   /* the start of the one block */
}

static const char *event_invalid_reason(const sync_event *ev)
{
    const char *invalid = sync_event_invalid_reason(ev);
    if (invalid == NULL && event_carries_data(ev->type) && ev->data_len > MAX_DATA_LEN)
        return "invalid event: data too large";
    return invalid;
}

static void reject(sync_save_result *res, const char *reason, bool retryable)
{
    res->status = SYNC_SAVE_REJECTED;
    res->reason = reason;
    res->retryable = retryable;
}

/* (hlc, client_id) ordered lexicographically, client ids bytewise (strcmp
 * compares as unsigned char): every replica picks the same winner whatever
 * the arrival order. A tie is not newer. */
static bool lww_is_newer(const sync_event *ev, const sync_event *current)
{
    if (ev->hlc != current->hlc)
        return ev->hlc > current->hlc;
    return strcmp(client_id_of(ev), current->client_id) > 0;
}

/* doc is NULL for a never-seen document. */
static bool passes_conflict_check(sync_conflict_strategy strategy, const document *doc,
                                  const sync_event *ev)
{
    switch (strategy) {
    case SYNC_CLIENT_WINS:
        return true;
    case SYNC_SERVER_WINS:
        return ev->base_seq == (doc != NULL ? doc->version->ev.seq : 0);
    case SYNC_LAST_WRITE_WINS:
        return doc == NULL || lww_is_newer(ev, &doc->version->ev);
    }
    return false;
}

/* The winner is the current version; for a never-seen document (server-wins
 * with base_seq != 0) it is "absent": seq 0, deleted, no data. */
static void report_conflict(sync_save_result *res, const document *doc, const sync_event *ev,
                            save_batch *batch)
{
    res->status = SYNC_SAVE_CONFLICT;
    if (doc != NULL) {
        event_block *winner = block_ref(doc->version);
        batch->winners[batch->winner_count++] = winner;
        res->winner = document_of(winner);
        return;
    }
    /* ev->document_id is borrowed from the caller, and the callback runs
     * before save_events returns. */
    res->winner.document_id = ev->document_id;
    res->winner.client_id = "";
    res->winner.deleted = true;
}

/* Adds the new records to the hash tables, all or none. */
static bool index_event(collection *c, id_record *rec, document *fresh_doc)
{
    HASH_ADD_KEYPTR(hh, c->ids, rec->id, strlen(rec->id), rec);
    if (rec->hh.tbl == NULL)
        return false;
    if (fresh_doc == NULL)
        return true;
    HASH_ADD_KEYPTR(hh, c->documents, fresh_doc->id, strlen(fresh_doc->id), fresh_doc);
    if (fresh_doc->hh.tbl != NULL)
        return true;
    HASH_DEL(c->ids, rec);
    return false;
}

/* Stores an event that passed every check. Allocates first, so running out
 * of memory or room leaves the collection as it was (apart from what the
 * size cap trimmed). Caller holds c->lock. */
static void append_event(memory_storage *ms, collection *c, document *doc, const sync_event *ev,
                         save_batch *batch, sync_save_result *res)
{
    size_t cost = event_cost(ev);
    if (cost > ms->max_bytes) {
        reject(res, "event larger than the storage size limit", false);
        return;
    }
    uint64_t seq = c->last_seq + 1;
    event_block *block = event_block_new(ev, seq);
    id_record *rec = id_record_new(ev->id, seq, ev->timestamp_ms);
    document *fresh_doc = doc == NULL ? document_new(ev->document_id) : NULL;
    const char *failure = NULL;
    size_t trim = 0;
    if (block == NULL || rec == NULL || (doc == NULL && fresh_doc == NULL) ||
        !ring_reserve_one(&c->log)) {
        failure = "out of memory";
    } else if (!usage_take_room(ms, c, cost, &trim)) {
        failure = "storage full";
    } else {
        while (trim-- > 0)
            collection_drop_oldest(ms, c, TRIM_FOR_SPACE);
        if (!index_event(c, rec, fresh_doc)) {
            usage_give_back(ms, 1, cost);
            failure = "out of memory";
        }
    }
    if (failure != NULL) {
        free(block);
        free(rec);
        free(fresh_doc);
        reject(res, failure, true);
        return;
    }

    ring_push(&c->log, block);              /* the log takes the creation reference */
    c->last_seq = seq;
    if (fresh_doc != NULL) {
        doc = fresh_doc;
        atomic_fetch_add_explicit(&ms->document_count, 1, memory_order_relaxed);
    }
    block_unref(doc->version);
    doc->version = block_ref(block);
    batch->accepted[batch->accepted_count++] = block_ref(block);
    res->status = SYNC_SAVE_ACCEPTED;
    res->seq = seq;
}

/* Caller holds c->lock. */
static void save_one(memory_storage *ms, collection *c, sync_conflict_strategy strategy,
                     const sync_event *ev, save_batch *batch, sync_save_result *res)
{
    const char *invalid = event_invalid_reason(ev);
    if (invalid != NULL) {
        reject(res, invalid, false);
        return;
    }
    id_record *seen;
    HASH_FIND_STR(c->ids, ev->id, seen);
    if (seen != NULL) {
        res->status = SYNC_SAVE_DUPLICATE;
        res->seq = seen->seq;
        return;
    }
    document *doc;
    HASH_FIND_STR(c->documents, ev->document_id, doc);
    if (!passes_conflict_check(strategy, doc, ev)) {
        report_conflict(res, doc, ev, batch);
        return;
    }
    append_event(ms, c, doc, ev, batch, res);
}

/* Caller holds c->lock: that is what keeps listener calls in seq order and
 * never concurrent for one collection. */
static void announce_accepted(memory_storage *ms, const collection *c, save_batch *batch)
{
    if (batch->accepted_count == 0)
        return;
    pthread_rwlock_rdlock(&ms->listener_lock);
    if (ms->listener != NULL) {
        for (size_t i = 0; i < batch->accepted_count; i++)
            batch->announced[i] = batch->accepted[i]->ev;
        ms->listener(ms->listener_data, c->tenant, c->name, batch->announced,
                     batch->accepted_count);
    }
    pthread_rwlock_unlock(&ms->listener_lock);
}

static void memory_save_events(void *ctx, const char *tenant, const char *name,
                               sync_conflict_strategy strategy, const sync_event *events,
                               size_t count, sync_save_cb done, void *user_data)
{
    memory_storage *ms = ctx;
    save_batch batch;
    memset(&batch, 0, sizeof batch);
    collection *c = NULL;
    int status = SYNC_STORAGE_OK;

    if (tenant == NULL || name == NULL || !sync_conflict_strategy_is_known(strategy) ||
        (events == NULL && count > 0))
        status = SYNC_STORAGE_INVALID;
    else if (count > 0 && (!save_batch_init(&batch, count) ||
                           (c = collection_get(ms, tenant, name)) == NULL))
        status = SYNC_STORAGE_UNAVAILABLE;

    if (c != NULL) {
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < count; i++)
            save_one(ms, c, strategy, &events[i], &batch, &batch.results[i]);
        announce_accepted(ms, c, &batch);
        pthread_mutex_unlock(&c->lock);
    }
    if (done != NULL) {
        bool ok = status == SYNC_STORAGE_OK;
        done(user_data, status, ok ? batch.results : NULL, ok ? count : 0);
    }
    save_batch_release(&batch);
}

/* ---- reads ---------------------------------------------------------------- */

/* Events handed to one callback, each block referenced until it returns. */
typedef struct event_page {
    sync_event *events;
    event_block **blocks;
    size_t count;
    sync_head head;
    bool complete;
} event_page;

static void event_page_release(event_page *page)
{
    for (size_t i = 0; i < page->count; i++)
        block_unref(page->blocks[i]);
    free(page->events);
    free(page->blocks);
}

static bool written_by(const event_block *b, const char *client_id)
{
    return client_id != NULL && strcmp(b->ev.client_id, client_id) == 0;
}

/* Retained events with seq > after_seq not written by exclude_client (NULL:
 * none excluded), at most limit, and the head they were read at. A cursor
 * older than the log gets what is retained; the head shows the gap. */
static int event_page_collect(collection *c, uint64_t after_seq, size_t limit,
                              const char *exclude_client, event_page *page)
{
    int status = SYNC_STORAGE_OK;
    memset(page, 0, sizeof *page);
    pthread_mutex_lock(&c->lock);
    page->head = collection_head(c);
    uint64_t skip = after_seq >= c->first_seq ? after_seq - c->first_seq + 1 : 0;
    size_t i = skip < c->log.count ? (size_t)skip : c->log.count;
    size_t room = c->log.count - i < limit ? c->log.count - i : limit;
    if (room > 0) {
        page->events = malloc(room * sizeof *page->events);
        page->blocks = malloc(room * sizeof *page->blocks);
        if (page->events == NULL || page->blocks == NULL) {
            status = SYNC_STORAGE_UNAVAILABLE;
            goto out;
        }
    }
    for (; i < c->log.count && page->count < limit; i++) {
        event_block *b = ring_at(&c->log, i);
        if (written_by(b, exclude_client))
            continue;
        page->blocks[page->count] = block_ref(b);
        page->events[page->count++] = b->ev;
    }
    /* Complete unless a wanted event remains past the limit. */
    page->complete = true;
    for (; i < c->log.count; i++) {
        if (!written_by(ring_at(&c->log, i), exclude_client)) {
            page->complete = false;
            break;
        }
    }
out:
    pthread_mutex_unlock(&c->lock);
    return status;
}

static void memory_events_after(void *ctx, const char *tenant, const char *name,
                                uint64_t after_seq, size_t limit, sync_events_cb done,
                                void *user_data)
{
    memory_storage *ms = ctx;
    event_page page;
    memset(&page, 0, sizeof page);
    collection *c = NULL;
    int status = SYNC_STORAGE_OK;

    if (tenant == NULL || name == NULL || done == NULL)
        status = SYNC_STORAGE_INVALID;
    else if ((c = collection_get(ms, tenant, name)) == NULL)
        status = SYNC_STORAGE_UNAVAILABLE;
    else
        status = event_page_collect(c, after_seq, limit, NULL, &page);

    if (status == SYNC_STORAGE_OK)
        done(user_data, status, page.events, page.count, &page.head, page.complete);
    else if (done != NULL)
        done(user_data, status, NULL, 0, &no_head, false);
    event_page_release(&page);
}

static void memory_events_for_client(void *ctx, const char *tenant, const char *client_id,
                                     const char *const *collections, const uint64_t *after_seq,
                                     size_t collection_count, size_t limit, sync_events_cb done,
                                     void *user_data)
{
    memory_storage *ms = ctx;
    if (done == NULL)
        return;
    bool args_ok = tenant != NULL && client_id != NULL && collections != NULL;
    for (size_t i = 0; i < collection_count; i++) {
        event_page page;
        memset(&page, 0, sizeof page);
        collection *c = NULL;
        int status;
        if (!args_ok || collections[i] == NULL)
            status = SYNC_STORAGE_INVALID;
        else if ((c = collection_get(ms, tenant, collections[i])) == NULL)
            status = SYNC_STORAGE_UNAVAILABLE;
        else
            status = event_page_collect(c, after_seq != NULL ? after_seq[i] : 0, limit,
                                        client_id, &page);
        if (status == SYNC_STORAGE_OK)
            done(user_data, status, page.events, page.count, &page.head, page.complete);
        else
            done(user_data, status, NULL, 0, &no_head, false);
        event_page_release(&page);
    }
}

static int compare_by_document_id(const void *a, const void *b)
{
    const sync_document *x = a, *y = b;
    return strcmp(x->document_id, y->document_id);
}

/* The live documents of c and their head, each block referenced. */
static int snapshot_collect(collection *c, sync_document **docs_out, event_block ***blocks_out,
                            size_t *count_out, sync_head *head)
{
    int status = SYNC_STORAGE_OK;
    sync_document *docs = NULL;
    event_block **blocks = NULL;
    size_t count = 0;
    pthread_mutex_lock(&c->lock);
    *head = collection_head(c);     /* under the same lock as the documents: they match */
    size_t held = HASH_COUNT(c->documents);
    if (held > 0) {
        docs = malloc(held * sizeof *docs);
        blocks = malloc(held * sizeof *blocks);
        if (docs == NULL || blocks == NULL)
            status = SYNC_STORAGE_UNAVAILABLE;
    }
    for (document *d = c->documents; status == SYNC_STORAGE_OK && d != NULL; d = d->hh.next) {
        if (d->version->ev.type == SYNC_EVENT_DELETE)
            continue;
        blocks[count] = block_ref(d->version);
        docs[count++] = document_of(d->version);
    }
    pthread_mutex_unlock(&c->lock);
    *docs_out = docs;
    *blocks_out = blocks;
    *count_out = count;
    return status;
}

static void memory_snapshot(void *ctx, const char *tenant, const char *name,
                            sync_snapshot_cb done, void *user_data)
{
    memory_storage *ms = ctx;
    sync_document *docs = NULL;
    event_block **blocks = NULL;
    size_t count = 0;
    sync_head head;
    collection *c = NULL;
    int status;

    if (done == NULL)
        return;
    if (tenant == NULL || name == NULL)
        status = SYNC_STORAGE_INVALID;
    else if ((c = collection_get(ms, tenant, name)) == NULL)
        status = SYNC_STORAGE_UNAVAILABLE;
    else
        status = snapshot_collect(c, &docs, &blocks, &count, &head);

    if (status == SYNC_STORAGE_OK) {
        if (count > 1)
            qsort(docs, count, sizeof *docs, compare_by_document_id);
        done(user_data, status, docs, count, &head);
    } else {
        done(user_data, status, NULL, 0, &no_head);
    }
    for (size_t i = 0; i < count; i++)
        block_unref(blocks[i]);
    free(docs);
    free(blocks);
}

static void memory_head(void *ctx, const char *tenant, const char *name, sync_head_cb done,
                        void *user_data)
{
    memory_storage *ms = ctx;
    if (done == NULL)
        return;
    if (tenant == NULL || name == NULL) {
        done(user_data, SYNC_STORAGE_INVALID, &no_head);
        return;
    }
    collection *c = collection_get(ms, tenant, name);
    if (c == NULL) {
        done(user_data, SYNC_STORAGE_UNAVAILABLE, &no_head);
        return;
    }
    pthread_mutex_lock(&c->lock);
    sync_head head = collection_head(c);
    pthread_mutex_unlock(&c->lock);
    done(user_data, SYNC_STORAGE_OK, &head);
}

/* ---- maintenance ---------------------------------------------------------- */

/* The collections that exist now. Copied so that the table lock is not held
 * while collection locks are taken one after another. */
static collection **collections_list(memory_storage *ms, size_t *count)
{
    pthread_rwlock_rdlock(&ms->table_lock);
    size_t n = HASH_COUNT(ms->collections);
    collection **list = malloc((n > 0 ? n : 1) * sizeof *list);
    if (list != NULL) {
        size_t i = 0;
        for (collection *c = ms->collections; c != NULL; c = c->hh.next)
            list[i++] = c;
    }
    pthread_rwlock_unlock(&ms->table_lock);
    *count = n;
    return list;
}

static void memory_clear_events_before(void *ctx, int64_t before_ms, sync_count_cb done,
                                       void *user_data)
{
    memory_storage *ms = ctx;
    size_t n;
    collection **list = collections_list(ms, &n);
    if (list == NULL) {
        if (done != NULL)
            done(user_data, SYNC_STORAGE_UNAVAILABLE, 0);
        return;
    }
    uint64_t dropped = 0;
    for (size_t i = 0; i < n; i++)
        dropped += collection_clear_before(ms, list[i], before_ms);
    free(list);
    if (done != NULL)
        done(user_data, SYNC_STORAGE_OK, dropped);
}

static void memory_set_listener(void *ctx, sync_listener_fn listener, void *listener_data)
{
    memory_storage *ms = ctx;
    /* The write lock waits for listener calls in progress. */
    pthread_rwlock_wrlock(&ms->listener_lock);
    ms->listener = listener;
    ms->listener_data = listener_data;
    pthread_rwlock_unlock(&ms->listener_lock);
}

/* Writer-preferring where glibc offers it: with glibc's default, a steady
 * stream of readers (saves announcing, lookups) could starve set_listener
 * and collection creation forever. */
static bool rwlock_init_writer_preferring(pthread_rwlock_t *lock)
{
    pthread_rwlockattr_t attr;
    if (pthread_rwlockattr_init(&attr) != 0)
        return false;
#ifdef __GLIBC__
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    bool ok = pthread_rwlock_init(lock, &attr) == 0;
    pthread_rwlockattr_destroy(&attr);
    return ok;
}

static void memory_storage_free_locks(memory_storage *ms, int initialised)
{
    if (initialised > 2)
        pthread_mutex_destroy(&ms->usage_lock);
    if (initialised > 1)
        pthread_rwlock_destroy(&ms->listener_lock);
    if (initialised > 0)
        pthread_rwlock_destroy(&ms->table_lock);
}

/* Returns how many of the three locks it initialised (3: all). */
static int memory_storage_init_locks(memory_storage *ms)
{
    if (!rwlock_init_writer_preferring(&ms->table_lock))
        return 0;
    if (!rwlock_init_writer_preferring(&ms->listener_lock))
        return 1;
    if (pthread_mutex_init(&ms->usage_lock, NULL) != 0)
        return 2;
    return 3;
}

static void memory_destroy(void *ctx)
{
    memory_storage *ms = ctx;
    if (ms == NULL)
        return;
    collection *c, *tmp;
    HASH_ITER(hh, ms->collections, c, tmp) {
        HASH_DEL(ms->collections, c);
        collection_free(c);
    }
    memory_storage_free_locks(ms, 3);
    free(ms);
}

static const sync_storage_ops memory_ops = {
    .save_events = memory_save_events,
    .events_after = memory_events_after,
    .events_for_client = memory_events_for_client,
    .clear_events_before = memory_clear_events_before,
    .snapshot = memory_snapshot,
    .head = memory_head,
    .set_listener = memory_set_listener,
    .destroy = memory_destroy,
};

/* ---- public --------------------------------------------------------------- */

void memory_storage_options_init(memory_storage_options *opts)
{
    opts->max_events = MEMORY_STORAGE_DEFAULT_MAX_EVENTS;
    opts->max_bytes = MEMORY_STORAGE_DEFAULT_MAX_BYTES;
}

sync_storage *memory_storage_create(const memory_storage_options *opts)
{
    memory_storage_options defaults;
    if (opts == NULL) {
        memory_storage_options_init(&defaults);
        opts = &defaults;
    }
    if (opts->max_events == 0 || opts->max_bytes == 0) {
        errno = EINVAL;
        return NULL;
    }
    sync_storage *s = malloc(sizeof *s);
    memory_storage *ms = calloc(1, sizeof *ms);
    int locks = 0;
    if (s == NULL || ms == NULL || (locks = memory_storage_init_locks(ms)) < 3)
        goto fail;
    ms->max_events = opts->max_events;
    ms->max_bytes = opts->max_bytes;
    s->ops = &memory_ops;
    s->ctx = ms;
    return s;

fail:
    if (ms != NULL)
        memory_storage_free_locks(ms, locks);
    free(ms);
    free(s);
    errno = ENOMEM;
    return NULL;
}

int memory_storage_stats_get(const sync_storage *s, memory_storage_stats *out)
{
    if (s == NULL || s->ops != &memory_ops || out == NULL)
        return SYNC_STORAGE_INVALID;
    memory_storage *ms = s->ctx;
    pthread_mutex_lock(&ms->usage_lock);
    out->retained_events = ms->retained_events;
    out->retained_bytes = ms->retained_bytes;
    pthread_mutex_unlock(&ms->usage_lock);
    out->collections = atomic_load_explicit(&ms->collection_count, memory_order_relaxed);
    out->documents = atomic_load_explicit(&ms->document_count, memory_order_relaxed);
    out->remembered_ids = atomic_load_explicit(&ms->remembered_ids, memory_order_relaxed);
    return SYNC_STORAGE_OK;
}
