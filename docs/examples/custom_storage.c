/* custom_storage: a storage written against storage/sync_storage.h alone
 * (the journal storage of custom_storage.h).
 *
 * What a storage must promise, and where this file keeps each promise:
 *
 *  1. Per (tenant, collection), accepted events get seqs 1, 2, 3, ... with
 *     no gap; sync_head gives the newest (last_seq) and the oldest still
 *     retained (first_seq).                            -> append_event, head_of
 *  2. A collection has an epoch from the moment it is first touched (a read
 *     too), never shared with another collection, and a new one whenever
 *     its data is lost. This storage loses everything on restart, so each
 *     instance draws a random prefix for its epochs.   -> collection_get
 *  3. Idempotency: an event whose id is stored is answered DUPLICATE with
 *     its original seq and is not stored again.        -> save_one
 *  4. Conflicts (event_wins): last-write-wins, the higher (hlc, client_id
 *     bytewise) wins and an exact tie loses; server-wins, base_seq must be
 *     the document's current seq (0: never written); client-wins, every
 *     write is accepted. A loser gets CONFLICT and the current version.
 *  5. In a batch, later events see earlier ones: applied one by one under
 *     the lock.                                        -> journal_save
 *  6. The listener hears each accepted event once, in seq order, never
 *     concurrently for one collection, before the save's completion: it is
 *     called with the lock held, after the batch is applied. -> journal_save
 *  7. Snapshots omit deleted documents and carry the head read under the
 *     same lock.                                       -> journal_snapshot
 *  8. events_after / events_for_client: retained events with seq > cursor
 *     in seq order, at most limit; complete is false only when the limit
 *     left out an event the caller wanted.             -> collect_events
 *  9. clear_events_before drops per collection the longest prefix of the
 *     log older than before_ms (so every seq >= first_seq stays retained),
 *     forgets those ids, keeps every document.         -> clear_collection
 * 10. Pointers passed in are borrowed for the call, so whatever is kept is
 *     copied (record_new). Pointers passed to a callback need only live
 *     through it: they point at copies the call frees afterwards.
 * 11. Any operation may be called from several threads at once.
 *
 * Threading. One mutex guards the whole storage: the simplest correct
 * choice, since seq assignment, the listener's order and the journal's line
 * order then hold by construction. Its price: collections do not save in
 * parallel. A busier storage gives each collection its own mutex, as
 * storage/memory_storage.c does. Completion callbacks run after the mutex is
 * released (they may call the storage again); the listener runs while it
 * is held (it must not).
 *
 * Simplifications of an example: no size cap (see custom_storage.h), and
 * running out of memory aborts (must()). A production storage answers the
 * call SYNC_STORAGE_UNAVAILABLE, or one event REJECTED "out of memory"
 * (retryable), and leaves its data as it was.
 */
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE 1   /* getentropy() */
#endif

#include "custom_storage.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* One stored copy of an event, its strings and data in the same block;
 * `next` chains it in one hash table. */
typedef struct record {
    struct record *next;
    sync_event ev;
    char bytes[];
} record;

/* A chained hash table of records, keyed by event id or by document id. */
typedef struct table {
    record **buckets;           /* size: a power of two */
    size_t size, count;
    bool by_document;
} table;

typedef struct collection {
    char *tenant, *name;
    char epoch[SYNC_EPOCH_MAX];
    record **log;               /* retained events, oldest first, seqs contiguous */
    size_t log_count, log_capacity;
    uint64_t last_seq;          /* 0 until the first event; first_seq = last_seq - log_count + 1 */
    table ids;                  /* event id -> its record in log (not owned) */
    table documents;            /* document id -> copy of the event that wrote it (owned) */
} collection;

typedef struct journal_storage {
    pthread_mutex_t lock;       /* guards everything below */
    collection **collections;   /* a plain array, searched linearly */
    size_t collection_count, collection_capacity;
    sync_listener_fn listener;
    void *listener_data;
    FILE *journal;              /* NULL: none */
    uint64_t instance;          /* random prefix of this instance's epochs */
    uint64_t epochs_made;
} journal_storage;

static void *must(void *p)
{
    if (p == NULL)
        abort();
    return p;
}

/* ---- records and the hash table ------------------------------------------ */

static bool carries_data(sync_event_type type)
{
    return type == SYNC_EVENT_INSERT || type == SYNC_EVENT_UPDATE;
}

static const char *copy_in(char **cursor, const void *src, size_t len)
{
    char *dst = *cursor;
    if (len > 0)
        memcpy(dst, src, len);
    *cursor += len;
    return dst;
}

/* A copy of ev with the given seq; client_id NULL becomes "", a delete
 * keeps no data. */
static record *record_new(const sync_event *ev, uint64_t seq)
{
    const char *client = ev->client_id != NULL ? ev->client_id : "";
    size_t id_len = strlen(ev->id) + 1, doc_len = strlen(ev->document_id) + 1;
    size_t client_len = strlen(client) + 1;
    size_t data_len = carries_data(ev->type) ? ev->data_len : 0;
    record *r = must(malloc(sizeof *r + id_len + doc_len + client_len + data_len));
    char *cursor = r->bytes;
    r->next = NULL;
    r->ev = *ev;
    r->ev.id = copy_in(&cursor, ev->id, id_len);
    r->ev.document_id = copy_in(&cursor, ev->document_id, doc_len);
    r->ev.client_id = copy_in(&cursor, client, client_len);
    r->ev.data = data_len > 0 ? (const uint8_t *)copy_in(&cursor, ev->data, data_len) : NULL;
    r->ev.data_len = data_len;
    r->ev.seq = seq;
    return r;
}

static sync_document document_of(const record *r)
{
    return (sync_document){.document_id = r->ev.document_id, .data = r->ev.data,
                           .data_len = r->ev.data_len, .seq = r->ev.seq, .hlc = r->ev.hlc,
                           .client_id = r->ev.client_id,
                           .deleted = r->ev.type == SYNC_EVENT_DELETE};
}

static void table_init(table *t, bool by_document)
{
    *t = (table){.buckets = must(calloc(16, sizeof *t->buckets)), .size = 16,
                 .by_document = by_document};
}

static const char *key_of(const table *t, const record *r)
{
    return t->by_document ? r->ev.document_id : r->ev.id;
}

static record **bucket_of(record **buckets, size_t size, const char *key)
{
    uint64_t h = 14695981039346656037u;     /* FNV-1a */
    for (; *key != '\0'; key++)
        h = (h ^ (unsigned char)*key) * 1099511628211u;
    return &buckets[h & (size - 1)];
}

/* The link pointing at the record with this key, or the NULL link ending
 * its chain. */
static record **table_link(const table *t, const char *key)
{
    record **link = bucket_of(t->buckets, t->size, key);
    while (*link != NULL && strcmp(key_of(t, *link), key) != 0)
        link = &(*link)->next;
    return link;
}

static record *table_find(const table *t, const char *key)
{
    return *table_link(t, key);
}

/* Adds r, whose key is not in t yet; doubles the buckets when full. */
static void table_insert(table *t, record *r)
{
    if (t->count >= t->size) {
        record **bigger = must(calloc(t->size * 2, sizeof *bigger));
        for (size_t i = 0; i < t->size; i++) {
            for (record *e = t->buckets[i], *next; e != NULL; e = next) {
                next = e->next;
                record **head = bucket_of(bigger, t->size * 2, key_of(t, e));
                e->next = *head;
                *head = e;
            }
        }
        free(t->buckets);
        t->buckets = bigger;
        t->size *= 2;
    }
    record **head = bucket_of(t->buckets, t->size, key_of(t, r));
    r->next = *head;
    *head = r;
    t->count++;
}

/* Unlinks and returns the record with this key (NULL: none). */
static record *table_remove(table *t, const char *key)
{
    record **link = table_link(t, key);
    record *r = *link;
    if (r != NULL) {
        *link = r->next;
        t->count--;
    }
    return r;
}

/* ---- collections ---------------------------------------------------------- */

/* The collection, created with its epoch when first touched (promise 2).
 * Tenant and name are compared apart: ("a/b","c") is not ("a","b/c").
 * Caller holds the lock. */
static collection *collection_get(journal_storage *js, const char *tenant, const char *name)
{
    for (size_t i = 0; i < js->collection_count; i++) {
        collection *c = js->collections[i];
        if (strcmp(c->tenant, tenant) == 0 && strcmp(c->name, name) == 0)
            return c;
    }
    if (js->collection_count == js->collection_capacity) {
        js->collection_capacity = js->collection_capacity > 0 ? js->collection_capacity * 2 : 8;
        js->collections = must(realloc(js->collections,
                                       js->collection_capacity * sizeof *js->collections));
    }
    collection *c = must(calloc(1, sizeof *c));
    c->tenant = must(strdup(tenant));
    c->name = must(strdup(name));
    table_init(&c->ids, false);
    table_init(&c->documents, true);
    snprintf(c->epoch, sizeof c->epoch, "%016" PRIx64 "-%" PRIu64, js->instance, ++js->epochs_made);
    js->collections[js->collection_count++] = c;
    return c;
}

static sync_head head_of(const collection *c)
{
    sync_head h = {.first_seq = c->last_seq - c->log_count + 1, .last_seq = c->last_seq};
    memcpy(h.epoch, c->epoch, sizeof h.epoch);
    return h;
}

static void collection_free(collection *c)
{
    for (size_t i = 0; i < c->log_count; i++)
        free(c->log[i]);                    /* the ids table only points at these */
    for (size_t i = 0; i < c->documents.size; i++) {
        for (record *r = c->documents.buckets[i], *next; r != NULL; r = next) {
            next = r->next;
            free(r);
        }
    }
    free(c->log);
    free(c->ids.buckets);
    free(c->documents.buckets);
    free(c->tenant);
    free(c->name);
    free(c);
}

/* ---- the journal ---------------------------------------------------------- */

/* ,"name":"value" with JSON escapes; other bytes are copied as they are. */
static void journal_string(FILE *f, const char *name, const char *s, size_t len)
{
    fprintf(f, ",\"%s\":\"", name);
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);   /* a newline in a document stays on its line */
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

/* One line per accepted event. Caller holds the lock: lines are in seq order. */
static void journal_write(FILE *f, const collection *c, const sync_event *ev)
{
    static const char *const types[] = {"", "insert", "update", "delete"};
    fprintf(f, "{\"seq\":%" PRIu64, ev->seq);
    journal_string(f, "tenant", c->tenant, strlen(c->tenant));
    journal_string(f, "collection", c->name, strlen(c->name));
    journal_string(f, "id", ev->id, strlen(ev->id));
    fprintf(f, ",\"type\":\"%s\"", types[ev->type]);
    journal_string(f, "document_id", ev->document_id, strlen(ev->document_id));
    journal_string(f, "client_id", ev->client_id, strlen(ev->client_id));
    fprintf(f, ",\"hlc\":%" PRIu64 ",\"timestamp_ms\":%" PRId64, ev->hlc, ev->timestamp_ms);
    if (ev->data != NULL)
        journal_string(f, "data", (const char *)ev->data, ev->data_len);
    else
        fputs(",\"data\":null", f);
    fputs("}\n", f);
}

/* ---- save_events ---------------------------------------------------------- */

/* sync_storage.h's shared check, plus this storage's own size bound. */
static const char *invalid_reason(const sync_event *ev)
{
    const char *invalid = sync_event_invalid_reason(ev);
    if (invalid == NULL && carries_data(ev->type) && ev->data_len > SIZE_MAX / 2)
        return "invalid event: data too large";
    return invalid;
}

/* Promise 4. current: the document's current version, NULL if never written. */
static bool event_wins(sync_conflict_strategy strategy, const record *current,
                       const sync_event *ev)
{
    if (strategy == SYNC_CLIENT_WINS)
        return true;
    if (strategy == SYNC_SERVER_WINS)
        return ev->base_seq == (current != NULL ? current->ev.seq : 0);
    if (current == NULL)
        return true;
    if (ev->hlc != current->ev.hlc)
        return ev->hlc > current->ev.hlc;
    /* strcmp compares as unsigned char, i.e. bytewise; a tie is not newer. */
    return strcmp(ev->client_id != NULL ? ev->client_id : "", current->ev.client_id) > 0;
}

/* Promise 1: the next seq, the log, the id, the document, the journal line. */
static void append_event(journal_storage *js, collection *c, const sync_event *ev,
                         sync_save_result *res)
{
    uint64_t seq = c->last_seq + 1;
    record *entry = record_new(ev, seq);
    if (c->log_count == c->log_capacity) {
        c->log_capacity = c->log_capacity > 0 ? c->log_capacity * 2 : 16;
        c->log = must(realloc(c->log, c->log_capacity * sizeof *c->log));
    }
    c->log[c->log_count++] = entry;
    c->last_seq = seq;
    table_insert(&c->ids, entry);
    free(table_remove(&c->documents, ev->document_id));    /* the previous version */
    table_insert(&c->documents, record_new(ev, seq));
    if (js->journal != NULL)
        journal_write(js->journal, c, &entry->ev);
    *res = (sync_save_result){.status = SYNC_SAVE_ACCEPTED, .seq = seq};
}

/* One event of a batch. A conflict's winner is copied into *winner, freed by
 * the caller after the completion callback. Caller holds the lock. */
static void save_one(journal_storage *js, collection *c, sync_conflict_strategy strategy,
                     const sync_event *ev, sync_save_result *res, record **winner)
{
    const char *invalid = invalid_reason(ev);
    if (invalid != NULL) {
        *res = (sync_save_result){.status = SYNC_SAVE_REJECTED, .reason = invalid};
        return;
    }
    const record *stored = table_find(&c->ids, ev->id);
    if (stored != NULL) {                                   /* promise 3 */
        *res = (sync_save_result){.status = SYNC_SAVE_DUPLICATE, .seq = stored->ev.seq};
        return;
    }
    const record *current = table_find(&c->documents, ev->document_id);
    if (event_wins(strategy, current, ev)) {
        append_event(js, c, ev, res);
        return;
    }
    res->status = SYNC_SAVE_CONFLICT;
    if (current != NULL) {
        *winner = record_new(&current->ev, current->ev.seq);
        res->winner = document_of(*winner);
    } else {
        /* Server-wins, never-written document: the winner is "no document"
         * (seq 0). ev is borrowed until the call returns, after the callback. */
        res->winner = (sync_document){.document_id = ev->document_id, .client_id = "",
                                      .deleted = true};
    }
}

static void journal_save(void *ctx, const char *tenant, const char *name,
                         sync_conflict_strategy strategy, const sync_event *events, size_t count,
                         sync_save_cb done, void *user_data)
{
    journal_storage *js = ctx;
    int s = (int)strategy;
    if (tenant == NULL || name == NULL || (events == NULL && count > 0) ||
        (s != SYNC_LAST_WRITE_WINS && s != SYNC_SERVER_WINS && s != SYNC_CLIENT_WINS)) {
        done(user_data, SYNC_STORAGE_INVALID, NULL, 0);
        return;
    }
    /* + 1: calloc(0, ...) may return NULL. */
    sync_save_result *results = must(calloc(count + 1, sizeof *results));
    sync_event *accepted = must(calloc(count + 1, sizeof *accepted));
    record **winners = must(calloc(count + 1, sizeof *winners));
    size_t n = 0;
    pthread_mutex_lock(&js->lock);
    collection *c = count > 0 ? collection_get(js, tenant, name) : NULL;
    for (size_t i = 0; i < count; i++) {                   /* promise 5 */
        save_one(js, c, strategy, &events[i], &results[i], &winners[i]);
        if (results[i].status == SYNC_SAVE_ACCEPTED)
            accepted[n++] = c->log[c->log_count - 1]->ev;  /* valid while the lock is held */
    }
    if (n > 0 && js->journal != NULL)
        fflush(js->journal);
    if (n > 0 && js->listener != NULL)                     /* promise 6 */
        js->listener(js->listener_data, c->tenant, c->name, accepted, n);
    pthread_mutex_unlock(&js->lock);

    done(user_data, SYNC_STORAGE_OK, results, count);       /* no lock held */
    for (size_t i = 0; i < count; i++)
        free(winners[i]);
    free(winners);
    free(accepted);
    free(results);
}

/* ---- reads ---------------------------------------------------------------- */

static bool written_by(const record *r, const char *client_id)
{
    return client_id != NULL && strcmp(r->ev.client_id, client_id) == 0;
}

/* Promise 8: one page for one collection, copied under the lock, handed to
 * done without it. exclude: a client whose events are left out (NULL: none). */
static void collect_events(journal_storage *js, const char *tenant, const char *name,
                           uint64_t after_seq, size_t limit, const char *exclude,
                           sync_events_cb done, void *user_data)
{
    pthread_mutex_lock(&js->lock);
    collection *c = collection_get(js, tenant, name);
    sync_head head = head_of(c);
    uint64_t skip = after_seq >= head.first_seq ? after_seq - head.first_seq + 1 : 0;
    size_t i = skip < c->log_count ? (size_t)skip : c->log_count;
    size_t room = c->log_count - i < limit ? c->log_count - i : limit;
    record **copies = must(calloc(room + 1, sizeof *copies));
    sync_event *events = must(calloc(room + 1, sizeof *events));
    size_t count = 0;
    for (; i < c->log_count && count < limit; i++) {
        if (!written_by(c->log[i], exclude)) {
            copies[count] = record_new(&c->log[i]->ev, c->log[i]->ev.seq);
            events[count] = copies[count]->ev;
            count++;
        }
    }
    while (i < c->log_count && written_by(c->log[i], exclude))
        i++;
    bool complete = i == c->log_count;     /* nothing wanted is left out */
    pthread_mutex_unlock(&js->lock);

    done(user_data, SYNC_STORAGE_OK, events, count, &head, complete);
    for (size_t k = 0; k < count; k++)
        free(copies[k]);
    free(copies);
    free(events);
}

static const sync_head no_head = {.first_seq = 1, .last_seq = 0, .epoch = ""};

static void journal_events_after(void *ctx, const char *tenant, const char *name,
                                 uint64_t after_seq, size_t limit, sync_events_cb done,
                                 void *user_data)
{
    if (tenant == NULL || name == NULL)
        done(user_data, SYNC_STORAGE_INVALID, NULL, 0, &no_head, false);
    else
        collect_events(ctx, tenant, name, after_seq, limit, NULL, done, user_data);
}

static void journal_events_for_client(void *ctx, const char *tenant, const char *client_id,
                                      const char *const *collections, const uint64_t *after_seq,
                                      size_t collection_count, size_t limit, sync_events_cb done,
                                      void *user_data)
{
    for (size_t i = 0; i < collection_count; i++) {        /* one answer each, in order */
        if (tenant == NULL || client_id == NULL || collections == NULL || collections[i] == NULL)
            done(user_data, SYNC_STORAGE_INVALID, NULL, 0, &no_head, false);
        else
            collect_events(ctx, tenant, collections[i], after_seq != NULL ? after_seq[i] : 0,
                           limit, client_id, done, user_data);
    }
}

static int by_document_id(const void *a, const void *b)
{
    return strcmp(((const sync_document *)a)->document_id, ((const sync_document *)b)->document_id);
}

/* Promise 7. */
static void journal_snapshot(void *ctx, const char *tenant, const char *name,
                             sync_snapshot_cb done, void *user_data)
{
    journal_storage *js = ctx;
    if (tenant == NULL || name == NULL) {
        done(user_data, SYNC_STORAGE_INVALID, NULL, 0, &no_head);
        return;
    }
    pthread_mutex_lock(&js->lock);
    collection *c = collection_get(js, tenant, name);
    sync_head head = head_of(c);
    record **copies = must(calloc(c->documents.count + 1, sizeof *copies));
    sync_document *docs = must(calloc(c->documents.count + 1, sizeof *docs));
    size_t count = 0;
    for (size_t b = 0; b < c->documents.size; b++) {
        for (const record *r = c->documents.buckets[b]; r != NULL; r = r->next) {
            if (r->ev.type != SYNC_EVENT_DELETE) {
                copies[count] = record_new(&r->ev, r->ev.seq);
                docs[count] = document_of(copies[count]);
                count++;
            }
        }
    }
    pthread_mutex_unlock(&js->lock);

    qsort(docs, count, sizeof *docs, by_document_id);
    done(user_data, SYNC_STORAGE_OK, docs, count, &head);
    for (size_t k = 0; k < count; k++)
        free(copies[k]);
    free(copies);
    free(docs);
}

static void journal_head(void *ctx, const char *tenant, const char *name, sync_head_cb done,
                         void *user_data)
{
    journal_storage *js = ctx;
    if (tenant == NULL || name == NULL) {
        done(user_data, SYNC_STORAGE_INVALID, &no_head);
        return;
    }
    pthread_mutex_lock(&js->lock);
    sync_head head = head_of(collection_get(js, tenant, name));
    pthread_mutex_unlock(&js->lock);
    done(user_data, SYNC_STORAGE_OK, &head);
}

/* ---- maintenance ---------------------------------------------------------- */

/* Promise 9. Caller holds the lock. */
static uint64_t clear_collection(collection *c, int64_t before_ms)
{
    size_t n = 0;
    while (n < c->log_count && c->log[n]->ev.timestamp_ms < before_ms) {
        table_remove(&c->ids, c->log[n]->ev.id);           /* the id goes with the entry */
        free(c->log[n]);
        n++;
    }
    if (n > 0)
        memmove(c->log, c->log + n, (c->log_count - n) * sizeof *c->log);
    c->log_count -= n;
    return n;
}

static void journal_clear_events_before(void *ctx, int64_t before_ms, sync_count_cb done,
                                        void *user_data)
{
    journal_storage *js = ctx;
    uint64_t dropped = 0;
    pthread_mutex_lock(&js->lock);
    for (size_t i = 0; i < js->collection_count; i++)
        dropped += clear_collection(js->collections[i], before_ms);
    pthread_mutex_unlock(&js->lock);
    done(user_data, SYNC_STORAGE_OK, dropped);
}

static void journal_set_listener(void *ctx, sync_listener_fn listener, void *listener_data)
{
    journal_storage *js = ctx;
    pthread_mutex_lock(&js->lock);     /* so it waits for a listener call in progress */
    js->listener = listener;
    js->listener_data = listener_data;
    pthread_mutex_unlock(&js->lock);
}

static void journal_destroy(void *ctx)
{
    journal_storage *js = ctx;
    for (size_t i = 0; i < js->collection_count; i++)
        collection_free(js->collections[i]);
    free(js->collections);
    pthread_mutex_destroy(&js->lock);
    free(js);
}

static const sync_storage_ops journal_ops = {
    .save_events = journal_save,
    .events_after = journal_events_after,
    .events_for_client = journal_events_for_client,
    .clear_events_before = journal_clear_events_before,
    .snapshot = journal_snapshot,
    .head = journal_head,
    .set_listener = journal_set_listener,
    .destroy = journal_destroy,
};

sync_storage *journal_storage_create(FILE *journal)
{
    sync_storage *s = malloc(sizeof *s);
    journal_storage *js = calloc(1, sizeof *js);
    int err = ENOMEM;
    if (s == NULL || js == NULL)
        goto fail;
    if (getentropy(&js->instance, sizeof js->instance) != 0) {     /* promise 2 */
        err = errno;
        goto fail;
    }
    if ((err = pthread_mutex_init(&js->lock, NULL)) != 0)
        goto fail;
    js->journal = journal;
    *s = (sync_storage){.ops = &journal_ops, .ctx = js};
    return s;
fail:
    free(js);
    free(s);
    errno = err;
    return NULL;
}
