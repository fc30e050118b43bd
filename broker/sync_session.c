/* sync_session: Hello, Subscribe, Unsubscribe and Push for one session, and
 * the worker's delivery of ring events to its live subscribers. */
#include "sync_session.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <jansson.h>
#include <uthash.h>

#include "auth.h"
#include "broker_context.h"
#include "log.h"
#include "metrics.h"
#include "session.h"
#include "sync_hub.h"
#include "sync_wire.h"

#define COLLECTION_NAME_MAX 128
#define EVENT_ID_MAX 256
#define DOCUMENT_ID_MAX 512
#define CLIENT_ID_MAX 256
#define SUBSCRIPTIONS_PER_SESSION 1024
#define EVENTS_PER_PUSH 1000
#define CATCHUP_PAGE_EVENTS 512
#define SNAPSHOT_PAGE_DOCUMENTS 256
#define DELIVER_BATCH 256
_Static_assert(CATCHUP_PAGE_EVENTS <= SESSION_MAX_EVENTS_PER_MESSAGE &&
                   DELIVER_BATCH <= SESSION_MAX_EVENTS_PER_MESSAGE,
               "a catch-up page or a delivery batch is one Events message");
/* Storage that answers inline would otherwise recurse once per catch-up
 * page; past this depth the next page is fetched in the next loop turn. */
#define CATCH_UP_MAX_DEPTH 8

typedef enum sub_mode {
    SUB_CATCHING_UP,   /* fed from storage */
    SUB_LIVE,          /* fed from the ring by sync_worker_deliver */
} sub_mode;

typedef struct local_channel local_channel;

/* A snapshot's pages, framed, handed to the session only while its output
 * is under the cap: a large collection must not look like a peer that does
 * not read (session.c drops those), nor take more memory than it needs. */
typedef struct snapshot_pages {
    struct evbuffer *frames;
    size_t *sizes;               /* bytes of each page's frame */
    size_t count, next;
} snapshot_pages;

typedef struct subscription {
    local_channel *lc;
    sync_session *owner;
    uint64_t next_seq;           /* first seq this subscriber has not been sent */
    char epoch[SYNC_EPOCH_MAX];
    sub_mode mode;
    bool fetching;               /* a storage read is in flight */
    bool paused;                 /* output over the cap: resume when drained */
    snapshot_pages *snapshot;    /* framed pages not yet handed to the session */
    bool removed;                /* left while a read was in flight: freed by it */
    struct subscription *prev_in_channel, *next_in_channel;
    struct subscription *next_in_session;
} subscription;

/* A collection as seen by one worker. Owner: the worker thread. */
struct local_channel {
    UT_hash_handle hh;           /* keyed by the channel pointer */
    sync_channel *channel;
    sync_worker *worker;
    uint64_t next_seq;           /* next seq to read from the ring */
    subscription *subs;
};

struct sync_worker {
    broker_context *broker;
    nebula_worker_metrics *metrics;
    struct event_base *base;
    int index;
    int catch_up_depth;          /* nested inline catch-up pages right now */
    struct event *deferred_event;  /* runs the deferred catch-ups next turn */
    struct subscription **deferred;
    size_t deferred_count, deferred_capacity;
    local_channel *channels;
    size_t subscriptions;
};

struct sync_session {
    sync_worker *worker;
    session *s;
    bool hello_done;
    bool detached;
    const auth_grant *grant;     /* borrowed (token table, allow-all) or owned_grant */
    auth_grant *owned_grant;
    char *client_id;
    char *header_token;
    subscription *subs;
    uint32_t sub_count;
};

static void start_catch_up(subscription *sub);
static bool finish_fetch(subscription *sub);
static void run_deferred_catch_ups(evutil_socket_t fd, short what, void *arg);

/* ---- worker -------------------------------------------------------------- */

sync_worker *sync_worker_create(broker_context *broker, int worker_index,
                                struct event_base *base, nebula_worker_metrics *metrics)
{
    sync_worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->broker = broker;
    w->metrics = metrics;
    w->base = base;
    w->deferred_event = event_new(base, -1, 0, run_deferred_catch_ups, w);
    if (!w->deferred_event) {
        free(w);
        return NULL;
    }
    w->index = worker_index;
    return w;
}

void sync_worker_free(sync_worker *w)
{
    if (!w)
        return;
    /* Deferred pages that never ran still hold their sessions. */
    for (size_t i = 0; i < w->deferred_count; i++)
        finish_fetch(w->deferred[i]);
    free(w->deferred);
    event_free(w->deferred_event);
    local_channel *lc, *tmp;
    HASH_ITER(hh, w->channels, lc, tmp) {
        HASH_DEL(w->channels, lc);
        sync_channel_watch(lc->channel, w->index, false);
        free(lc);
    }
    free(w);
}

size_t sync_worker_subscription_count(const sync_worker *w)
{
    return w->subscriptions;
}

static local_channel *local_channel_get(sync_worker *w, sync_channel *channel)
{
    local_channel *lc = NULL;
    HASH_FIND_PTR(w->channels, &channel, lc);
    if (lc)
        return lc;
    lc = calloc(1, sizeof *lc);
    if (!lc)
        return NULL;
    lc->channel = channel;
    lc->worker = w;
    /* Watch first, then read the ring's position: an event published in
     * between is both announced and found by the next delivery pass. */
    sync_channel_watch(channel, w->index, true);
    lc->next_seq = fanout_ring_last_seq(sync_channel_ring(channel)) + 1;
    HASH_ADD_PTR(w->channels, channel, lc);
    return lc;
}

static void local_channel_release_if_unused(local_channel *lc)
{
    if (lc->subs)
        return;
    sync_channel_watch(lc->channel, lc->worker->index, false);
    HASH_DEL(lc->worker->channels, lc);
    free(lc);
}

/* Slow consumer: either stop feeding it live (it catches up from storage
 * once its output has drained) or, if so configured, close it. */
static void handle_slow_consumer(subscription *sub)
{
    metric_add(&sub->lc->worker->metrics->slow_consumers, 1);
    if (sub->lc->worker->broker->slow_consumer_close) {
        session_fail(sub->owner->s, 1008, "slow consumer: too much unsent output");
        return;
    }
    sub->mode = SUB_CATCHING_UP;
    sub->paused = true;
}

static void deliver_batch(local_channel *lc, shared_event **events, size_t count)
{
    const char *collection = sync_channel_collection(lc->channel);
    uint64_t first = events[0]->seq, last = events[count - 1]->seq;
    for (subscription *sub = lc->subs; sub; sub = sub->next_in_channel) {
        if (sub->mode != SUB_LIVE || sub->next_seq > last)
            continue;
        size_t skip = sub->next_seq > first ? (size_t)(sub->next_seq - first) : 0;
        size_t sent = session_send_events(sub->owner->s, collection, events + skip, count - skip);
        metric_add(&lc->worker->metrics->deliveries, sent);
        sub->next_seq = last + 1;
    }
}

/* The worker fell more than a ring behind: everyone live catches up from
 * storage, and the worker's cursor jumps to what the ring still holds. */
static void handle_overrun(local_channel *lc, fanout_ring *ring)
{
    log_info("worker %d: %s/%s: fell behind the ring, subscribers catch up from storage",
             lc->worker->index, sync_channel_tenant(lc->channel),
             sync_channel_collection(lc->channel));
    metric_add(&lc->worker->metrics->ring_overruns, 1);
    lc->next_seq = fanout_ring_last_seq(ring) + 1;
    for (subscription *sub = lc->subs; sub; sub = sub->next_in_channel) {
        if (sub->mode == SUB_LIVE) {
            sub->mode = SUB_CATCHING_UP;
            start_catch_up(sub);
        }
    }
}

/* A subscriber is slow when output queued in earlier loop turns is still
 * unsent: libevent writes once per turn, so output added in this pass does
 * not count against it (one pass adds at most a ring's worth). */
static void mark_slow_consumers(local_channel *lc)
{
    for (subscription *sub = lc->subs; sub; sub = sub->next_in_channel)
        if (sub->mode == SUB_LIVE && session_output_over_cap(sub->owner->s))
            handle_slow_consumer(sub);
}

static void deliver_channel(local_channel *lc)
{
    fanout_ring *ring = sync_channel_ring(lc->channel);
    mark_slow_consumers(lc);
    shared_event *batch[DELIVER_BATCH];
    if (lc->next_seq > fanout_ring_last_seq(ring) + 1) {
        /* The ring restarted behind us: the collection's log was reset (a
         * new epoch in a shared storage). Storage tells subscribers how. */
        handle_overrun(lc, ring);
        return;
    }
    while (lc->next_seq <= fanout_ring_last_seq(ring)) {
        size_t n = 0;
        ring_read_status status = fanout_ring_read_batch(ring, lc->next_seq, batch, DELIVER_BATCH, &n);
        if (status == RING_READ_OVERRUN) {
            handle_overrun(lc, ring);
            return;
        }
        if (status != RING_READ_OK || n == 0)
            return;
        lc->next_seq = batch[n - 1]->seq + 1;
        deliver_batch(lc, batch, n);
        for (size_t i = 0; i < n; i++)
            shared_event_unref(batch[i]);
    }
}

void sync_worker_deliver(sync_worker *w)
{
    local_channel *lc, *tmp;
    HASH_ITER(hh, w->channels, lc, tmp)
        deliver_channel(lc);
}

/* ---- session lifecycle --------------------------------------------------- */

sync_session *sync_session_create(sync_worker *worker, session *s)
{
    sync_session *ss = calloc(1, sizeof *ss);
    if (!ss)
        return NULL;
    ss->worker = worker;
    ss->s = s;
    return ss;
}

static void subscription_unlink(subscription *sub)
{
    local_channel *lc = sub->lc;
    if (sub->prev_in_channel)
        sub->prev_in_channel->next_in_channel = sub->next_in_channel;
    else
        lc->subs = sub->next_in_channel;
    if (sub->next_in_channel)
        sub->next_in_channel->prev_in_channel = sub->prev_in_channel;
    lc->worker->subscriptions--;
    local_channel_release_if_unused(lc);
}

static void snapshot_pages_free(snapshot_pages *p);

static void subscription_free(subscription *sub)
{
    snapshot_pages_free(sub->snapshot);
    free(sub);
}

/* Leaves the channel now; the memory goes once no storage read uses it. */
static void subscription_remove(subscription *sub)
{
    subscription_unlink(sub);
    if (sub->fetching)
        sub->removed = true;
    else
        subscription_free(sub);
}

void sync_session_detach(sync_session *ss)
{
    if (ss->detached)
        return;
    ss->detached = true;
    subscription *sub = ss->subs, *next;
    for (; sub; sub = next) {
        next = sub->next_in_session;
        subscription_remove(sub);
    }
    ss->subs = NULL;
}

void sync_session_free(sync_session *ss)
{
    if (!ss)
        return;
    sync_session_detach(ss);
    free(ss->owned_grant);
    free(ss->client_id);
    free(ss->header_token);
    free(ss);
}

void sync_session_set_header_token(sync_session *ss, const char *token)
{
    free(ss->header_token);
    ss->header_token = token && *token ? strdup(token) : NULL;
}

/* ---- replies ------------------------------------------------------------- */

static void send_error(sync_session *ss, Nebula__Sync__V1__ErrorCode code, const char *text)
{
    session_send_error(ss->s, code, text);
}

static void fill_cursor(Nebula__Sync__V1__Cursor *cursor, uint64_t seq, const char *epoch)
{
    cursor->seq = seq;
    cursor->epoch = (char *)epoch;
}

static void send_subscribed(sync_session *ss, const char *collection,
                            Nebula__Sync__V1__SubscribeMode mode, const sync_head *head)
{
    Nebula__Sync__V1__Cursor cursor = NEBULA__SYNC__V1__CURSOR__INIT;
    fill_cursor(&cursor, head->last_seq, head->epoch);
    Nebula__Sync__V1__Subscribed subscribed = NEBULA__SYNC__V1__SUBSCRIBED__INIT;
    subscribed.collection = (char *)collection;
    subscribed.mode = mode;
    subscribed.head = &cursor;
    Nebula__Sync__V1__ServerMessage message = NEBULA__SYNC__V1__SERVER_MESSAGE__INIT;
    message.message_case = NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SUBSCRIBED;
    message.subscribed = &subscribed;
    session_send_message(ss->s, &message);
}

/* ---- catch-up from storage ----------------------------------------------- */

static bool subscription_gone(subscription *sub)
{
    return sub->removed || !session_is_open(sub->owner->s);
}

/* Ends a storage read: frees a subscription removed meanwhile. */
static bool finish_fetch(subscription *sub)
{
    sub->fetching = false;
    session *s = sub->owner->s;
    if (sub->removed) {
        subscription_free(sub);
        session_release(s);
        return false;
    }
    session_release(s);
    return session_is_open(s);
}

static void send_stored_events(subscription *sub, const sync_event *events, size_t count)
{
    const char *collection = sync_channel_collection(sub->lc->channel);
    shared_event *encoded[CATCHUP_PAGE_EVENTS];
    size_t n = 0;
    for (size_t i = 0; i < count && n < CATCHUP_PAGE_EVENTS; i++) {
        if (events[i].seq < sub->next_seq)
            continue;
        shared_event *se = sync_wire_encode_event(collection, &events[i]);
        if (!se)
            break;
        /* The origin stays: events this session pushed itself are left out
         * (it has, or will get, their PushResults on this connection), as
         * live; those of an earlier connection of the client are replayed. */
        encoded[n++] = se;
    }
    if (n) {
        metric_add(&sub->lc->worker->metrics->deliveries,
                   session_send_events(sub->owner->s, collection, encoded, n));
        sub->next_seq = encoded[n - 1]->seq + 1;
    }
    for (size_t i = 0; i < n; i++)
        shared_event_unref(encoded[i]);
}

static void start_snapshot(subscription *sub);

static void run_deferred_catch_ups(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sync_worker *w = arg;
    subscription **due = w->deferred;
    size_t count = w->deferred_count;
    w->deferred = NULL;
    w->deferred_count = w->deferred_capacity = 0;
    for (size_t i = 0; i < count; i++)
        if (finish_fetch(due[i]))
            start_catch_up(due[i]);
    free(due);
}

static bool defer_catch_up(sync_worker *w, subscription *sub)
{
    if (w->deferred_count == w->deferred_capacity) {
        size_t capacity = w->deferred_capacity ? w->deferred_capacity * 2 : 16;
        subscription **grown = realloc(w->deferred, capacity * sizeof *grown);
        if (!grown)
            return false;
        w->deferred = grown;
        w->deferred_capacity = capacity;
    }
    w->deferred[w->deferred_count++] = sub;
    event_active(w->deferred_event, EV_TIMEOUT, 0);
    return true;
}

/* The next page, now or (deep in inline completions) in the next loop
 * turn; the subscription counts as fetching meanwhile, so that leaving
 * frees it only once the deferred call has run. */
static void continue_catch_up(subscription *sub)
{
    sync_worker *w = sub->lc->worker;
    if (w->catch_up_depth < CATCH_UP_MAX_DEPTH) {
        w->catch_up_depth++;
        start_catch_up(sub);
        w->catch_up_depth--;
        return;
    }
    sub->fetching = true;
    session_hold(sub->owner->s);
    if (!defer_catch_up(w, sub)) {
        log_error("cannot defer a catch-up page; the subscriber resumes when its output drains");
        sub->paused = true;
        finish_fetch(sub);
    }
}

static void on_catch_up_page(void *user_data, int status, const sync_event *events, size_t count,
                             const sync_head *head, bool complete)
{
    subscription *sub = user_data;
    if (!finish_fetch(sub))
        return;
    if (status != SYNC_STORAGE_OK) {
        send_error(sub->owner, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_STORAGE_UNAVAILABLE,
                   "storage unavailable while catching up; subscribe again");
        sub->paused = true;
        return;
    }
    if (strcmp(head->epoch, sub->epoch) != 0 || head->first_seq > sub->next_seq) {
        start_snapshot(sub);   /* the log was reset, or trimmed past us */
        return;
    }
    send_stored_events(sub, events, count);
    if (session_output_over_cap(sub->owner->s)) {
        sub->paused = true;
        return;
    }
    /* Live only once storage has nothing beyond what the ring will bring.
     * (An empty complete page means storage has nothing newer at all.) */
    if (complete && (sub->next_seq >= sub->lc->next_seq || count == 0)) {
        sub->mode = SUB_LIVE;
        return;
    }
    continue_catch_up(sub);
}

static void start_catch_up(subscription *sub)
{
    if (sub->fetching || subscription_gone(sub))
        return;
    sub->paused = false;
    sub->fetching = true;
    session_hold(sub->owner->s);
    sync_storage *storage = sub->lc->worker->broker->storage;
    storage->ops->events_after(storage->ctx, sync_channel_tenant(sub->lc->channel),
                               sync_channel_collection(sub->lc->channel), sub->next_seq - 1,
                               CATCHUP_PAGE_EVENTS, on_catch_up_page, sub);
}

/* ---- snapshots ------------------------------------------------------------ */

static void snapshot_pages_free(snapshot_pages *p)
{
    if (!p)
        return;
    if (p->frames)
        evbuffer_free(p->frames);
    free(p->sizes);
    free(p);
}

static bool frame_snapshot_page(snapshot_pages *p, const char *collection, const sync_document *docs,
                                size_t count, const sync_head *head, bool last)
{
    Nebula__Sync__V1__Document pages[SNAPSHOT_PAGE_DOCUMENTS];
    Nebula__Sync__V1__Document *pointers[SNAPSHOT_PAGE_DOCUMENTS];
    for (size_t i = 0; i < count; i++) {
        nebula__sync__v1__document__init(&pages[i]);
        pages[i].collection = (char *)collection;
        pages[i].document_id = (char *)docs[i].document_id;
        pages[i].data.data = (uint8_t *)docs[i].data;
        pages[i].data.len = docs[i].data_len;
        pages[i].seq = docs[i].seq;
        pages[i].hlc = docs[i].hlc;
        pages[i].client_id = (char *)(docs[i].client_id ? docs[i].client_id : "");
        pointers[i] = &pages[i];
    }
    Nebula__Sync__V1__Cursor cursor = NEBULA__SYNC__V1__CURSOR__INIT;
    fill_cursor(&cursor, head->last_seq, head->epoch);
    Nebula__Sync__V1__Snapshot snapshot = NEBULA__SYNC__V1__SNAPSHOT__INIT;
    snapshot.collection = (char *)collection;
    snapshot.n_documents = count;
    snapshot.documents = pointers;
    snapshot.cursor = &cursor;
    snapshot.last = last;
    Nebula__Sync__V1__ServerMessage message = NEBULA__SYNC__V1__SERVER_MESSAGE__INIT;
    message.message_case = NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SNAPSHOT;
    message.snapshot = &snapshot;
    size_t before = evbuffer_get_length(p->frames);
    if (!session_frame_message(p->frames, &message))
        return false;
    p->sizes[p->count++] = evbuffer_get_length(p->frames) - before;
    return true;
}

/* Every page framed now: the storage's documents are only valid during
 * its callback. */
static snapshot_pages *frame_snapshot(const char *collection, const sync_document *docs,
                                      size_t count, const sync_head *head)
{
    size_t pages = count ? (count + SNAPSHOT_PAGE_DOCUMENTS - 1) / SNAPSHOT_PAGE_DOCUMENTS : 1;
    snapshot_pages *p = calloc(1, sizeof *p);
    if (!p || !(p->frames = evbuffer_new()) || !(p->sizes = calloc(pages, sizeof *p->sizes))) {
        snapshot_pages_free(p);
        return NULL;
    }
    size_t sent = 0;
    do {
        size_t page = count - sent < SNAPSHOT_PAGE_DOCUMENTS ? count - sent : SNAPSHOT_PAGE_DOCUMENTS;
        if (!frame_snapshot_page(p, collection, docs + sent, page, head, sent + page == count)) {
            snapshot_pages_free(p);
            return NULL;
        }
        sent += page;
    } while (sent < count);
    return p;
}

/* Hands pages over while the output is under the cap; after the last one,
 * the events after the snapshot, then live. */
static void pump_snapshot(subscription *sub)
{
    snapshot_pages *p = sub->snapshot;
    session *s = sub->owner->s;
    while (p->next < p->count && !session_output_over_cap(s))
        session_send_framed(s, p->frames, p->sizes[p->next++], 1);
    if (p->next < p->count)
        return;   /* sync_session_output_drained() pumps again */
    snapshot_pages_free(p);
    sub->snapshot = NULL;
    start_catch_up(sub);
}

static void on_snapshot(void *user_data, int status, const sync_document *docs, size_t count,
                        const sync_head *head)
{
    subscription *sub = user_data;
    if (!finish_fetch(sub))
        return;
    if (status != SYNC_STORAGE_OK) {
        send_error(sub->owner, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_STORAGE_UNAVAILABLE,
                   "storage unavailable for a snapshot; subscribe again");
        return;
    }
    const char *collection = sync_channel_collection(sub->lc->channel);
    snapshot_pages *pages = frame_snapshot(collection, docs, count, head);
    if (!pages) {
        send_error(sub->owner, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_LIMIT_EXCEEDED,
                   "out of memory for a snapshot; subscribe again");
        return;
    }
    send_subscribed(sub->owner, collection, NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_SNAPSHOT,
                    head);
    snprintf(sub->epoch, sizeof sub->epoch, "%s", head->epoch);
    sub->next_seq = head->last_seq + 1;
    snapshot_pages_free(sub->snapshot);   /* a snapshot that restarted one in progress */
    sub->snapshot = pages;
    pump_snapshot(sub);
}

static void start_snapshot(subscription *sub)
{
    if (sub->fetching || subscription_gone(sub))
        return;
    sub->mode = SUB_CATCHING_UP;
    sub->fetching = true;
    session_hold(sub->owner->s);
    sync_storage *storage = sub->lc->worker->broker->storage;
    storage->ops->snapshot(storage->ctx, sync_channel_tenant(sub->lc->channel),
                           sync_channel_collection(sub->lc->channel), on_snapshot, sub);
}

/* ---- Subscribe / Unsubscribe -------------------------------------------- */

static bool valid_name(const char *name, size_t max)
{
    size_t len = name ? strlen(name) : 0;
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)name[i] < 0x20)
            return false;
    return true;
}

static subscription *find_subscription(sync_session *ss, const char *collection,
                                       subscription ***link_out)
{
    subscription **link = &ss->subs;
    for (; *link; link = &(*link)->next_in_session) {
        if (strcmp(sync_channel_collection((*link)->lc->channel), collection) == 0) {
            if (link_out)
                *link_out = link;
            return *link;
        }
    }
    return NULL;
}

static void unsubscribe(sync_session *ss, const char *collection)
{
    subscription **link;
    subscription *sub = find_subscription(ss, collection, &link);
    if (!sub)
        return;
    *link = sub->next_in_session;
    ss->sub_count--;
    subscription_remove(sub);
}

typedef struct subscribe_request {
    subscription *sub;
    bool has_cursor;
    uint64_t cursor_seq;
    char cursor_epoch[SYNC_EPOCH_MAX];
} subscribe_request;

/* Replay when the cursor is from this epoch and inside the retained log;
 * otherwise a snapshot. */
static void on_subscribe_head(void *user_data, int status, const sync_head *head)
{
    subscribe_request *req = user_data;
    subscription *sub = req->sub;
    bool replay = req->has_cursor && status == SYNC_STORAGE_OK &&
                  strcmp(req->cursor_epoch, head->epoch) == 0 &&
                  req->cursor_seq + 1 >= head->first_seq && req->cursor_seq <= head->last_seq;
    uint64_t cursor_seq = req->cursor_seq;
    free(req);
    if (!finish_fetch(sub))
        return;
    if (status != SYNC_STORAGE_OK) {
        send_error(sub->owner, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_STORAGE_UNAVAILABLE,
                   "storage unavailable; subscribe again");
        return;
    }
    if (!replay) {
        start_snapshot(sub);
        return;
    }
    send_subscribed(sub->owner, sync_channel_collection(sub->lc->channel),
                    NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_REPLAY, head);
    snprintf(sub->epoch, sizeof sub->epoch, "%s", head->epoch);
    sub->next_seq = cursor_seq + 1;
    start_catch_up(sub);
}

static void subscribe_one(sync_session *ss, const Nebula__Sync__V1__CollectionSubscription *cs)
{
    const char *collection = cs->collection;
    if (!valid_name(collection, COLLECTION_NAME_MAX)) {
        send_error(ss, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_REQUEST,
                   "collection names are 1-128 bytes without control characters");
        return;
    }
    if (!auth_grant_can_read(ss->grant, collection)) {
        send_error(ss, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_FORBIDDEN, "collection not readable with this token");
        return;
    }
    unsubscribe(ss, collection);   /* a new Subscribe restarts from its cursor */
    if (ss->sub_count >= SUBSCRIPTIONS_PER_SESSION) {
        send_error(ss, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_LIMIT_EXCEEDED,
                   "too many subscriptions on this session (limit 1024)");
        return;
    }
    sync_worker *w = ss->worker;
    sync_channel *channel = sync_hub_channel(w->broker->hub, ss->grant->tenant, collection);
    local_channel *lc = channel ? local_channel_get(w, channel) : NULL;
    subscription *sub = lc ? calloc(1, sizeof *sub) : NULL;
    subscribe_request *req = sub ? calloc(1, sizeof *req) : NULL;
    if (!req) {
        free(sub);
        if (lc)
            local_channel_release_if_unused(lc);
        send_error(ss, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_LIMIT_EXCEEDED, "out of memory");
        return;
    }
    sub->lc = lc;
    sub->owner = ss;
    sub->mode = SUB_CATCHING_UP;
    sub->next_in_channel = lc->subs;
    if (lc->subs)
        lc->subs->prev_in_channel = sub;
    lc->subs = sub;
    sub->next_in_session = ss->subs;
    ss->subs = sub;
    ss->sub_count++;
    w->subscriptions++;

    req->sub = sub;
    req->has_cursor = cs->cursor != NULL;
    if (cs->cursor) {
        req->cursor_seq = cs->cursor->seq;
        snprintf(req->cursor_epoch, sizeof req->cursor_epoch, "%s",
                 cs->cursor->epoch ? cs->cursor->epoch : "");
    }
    sub->fetching = true;
    session_hold(ss->s);
    sync_storage *storage = w->broker->storage;
    storage->ops->head(storage->ctx, ss->grant->tenant, collection, on_subscribe_head, req);
}

static void handle_subscribe(sync_session *ss, const Nebula__Sync__V1__Subscribe *m)
{
    if (m->n_collections == 0) {
        send_error(ss, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_REQUEST,
                   "Subscribe names no collection");
        return;
    }
    for (size_t i = 0; i < m->n_collections; i++)
        subscribe_one(ss, m->collections[i]);
}

static void handle_unsubscribe(sync_session *ss, const Nebula__Sync__V1__Unsubscribe *m)
{
    for (size_t i = 0; i < m->n_collections; i++)
        unsubscribe(ss, m->collections[i]);
}

void sync_session_output_drained(sync_session *ss)
{
    for (subscription *sub = ss->subs; sub; sub = sub->next_in_session) {
        if (sub->snapshot)
            pump_snapshot(sub);
        else if (sub->paused)
            start_catch_up(sub);
    }
}

/* ---- Push ---------------------------------------------------------------- */

/* One Push in flight: results are gathered per event, in order, and sent
 * when the last storage call has answered. */
typedef struct push_request {
    sync_session *ss;
    uint64_t request_id;
    size_t count;
    size_t pending_calls;
    Nebula__Sync__V1__EventResult *results;
    Nebula__Sync__V1__EventResult **result_ptrs;
    Nebula__Sync__V1__Document *winners;
    char **event_ids;            /* copies: results must outlive the request message */
    char **collections;          /* copies, for conflict winners */
    sync_event *events;          /* for storage calls: borrow from the request message */
    char **owned_strings;        /* winner fields copied from storage callbacks */
    size_t owned_count;
} push_request;

typedef struct push_call {
    push_request *req;
    size_t first;                /* index of the call's first event in the request */
    size_t count;                /* events in the call */
} push_call;

static void push_request_free(push_request *req)
{
    for (size_t i = 0; i < req->count; i++) {
        free(req->event_ids[i]);
        free(req->collections[i]);
    }
    free(req->collections);
    for (size_t i = 0; i < req->owned_count; i++)
        free(req->owned_strings[i]);
    free(req->owned_strings);
    free(req->event_ids);
    free(req->results);
    free(req->result_ptrs);
    free(req->winners);
    free(req->events);
    free(req);
}

static void send_push_result(push_request *req)
{
    Nebula__Sync__V1__PushResult result = NEBULA__SYNC__V1__PUSH_RESULT__INIT;
    result.request_id = req->request_id;
    result.n_results = req->count;
    result.results = req->result_ptrs;
    Nebula__Sync__V1__ServerMessage message = NEBULA__SYNC__V1__SERVER_MESSAGE__INIT;
    message.message_case = NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_PUSH_RESULT;
    message.push_result = &result;
    session_send_message(req->ss->s, &message);
}

static void finish_push_call(push_request *req)
{
    if (--req->pending_calls > 0)
        return;
    session *s = req->ss->s;
    if (session_is_open(s))
        send_push_result(req);
    push_request_free(req);
    session_release(s);
}

static char *keep_string(push_request *req, const char *text, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, text, len);
    copy[len] = '\0';
    req->owned_strings[req->owned_count++] = copy;
    return copy;
}

static void record_winner(push_request *req, size_t i, const sync_document *w)
{
    Nebula__Sync__V1__Document *doc = &req->winners[i];
    doc->collection = req->collections[i];
    doc->document_id = keep_string(req, w->document_id, strlen(w->document_id));
    char *data = w->data_len ? keep_string(req, (const char *)w->data, w->data_len) : NULL;
    doc->data.data = (uint8_t *)data;
    doc->data.len = data ? w->data_len : 0;
    doc->seq = w->seq;
    doc->hlc = w->hlc;
    doc->client_id = keep_string(req, w->client_id ? w->client_id : "",
                                 w->client_id ? strlen(w->client_id) : 0);
    doc->deleted = w->deleted;
    req->results[i].winner = doc;
}

static void record_save_result(push_request *req, size_t i, const sync_save_result *r)
{
    Nebula__Sync__V1__EventResult *out = &req->results[i];
    nebula_worker_metrics *metrics = req->ss->worker->metrics;
    if (r->status == SYNC_SAVE_ACCEPTED)
        metric_add(&metrics->events_accepted, 1);
    else if (r->status != SYNC_SAVE_DUPLICATE)
        metric_add(&metrics->events_rejected, 1);
    switch (r->status) {
    case SYNC_SAVE_ACCEPTED:
        out->status = NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_ACCEPTED;
        out->seq = r->seq;
        break;
    case SYNC_SAVE_DUPLICATE:
        out->status = NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_DUPLICATE;
        out->seq = r->seq;
        break;
    case SYNC_SAVE_CONFLICT:
        out->status = NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_CONFLICT;
        record_winner(req, i, &r->winner);
        break;
    default:
        out->status = NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_REJECTED;
        out->reason = (char *)(r->reason ? r->reason : "rejected by storage");
        out->retryable = r->retryable;
        break;
    }
}

static void on_saved(void *user_data, int status, const sync_save_result *results, size_t count)
{
    push_call *call = user_data;
    push_request *req = call->req;
    /* A failed call reports no results: every event of it is rejected. */
    bool answered = status == SYNC_STORAGE_OK && count == call->count;
    for (size_t k = 0; k < call->count; k++) {
        size_t i = call->first + k;
        if (answered) {
            record_save_result(req, i, &results[k]);
        } else {
            metric_add(&req->ss->worker->metrics->events_rejected, 1);
            req->results[i].status = NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_REJECTED;
            req->results[i].reason = "storage unavailable";
            req->results[i].retryable = true;
        }
    }
    free(call);
    finish_push_call(req);
}

static void reject(push_request *req, size_t i, const char *reason)
{
    metric_add(&req->ss->worker->metrics->events_rejected, 1);
    req->results[i].status = NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_REJECTED;
    req->results[i].reason = (char *)reason;
    req->results[i].retryable = false;
}

/* NULL when the event may be stored, else why not. */
static const char *check_event(const sync_session *ss, const Nebula__Sync__V1__Event *e)
{
    if (!valid_name(e->collection, COLLECTION_NAME_MAX))
        return "invalid event: collection must be 1-128 bytes";
    if (!auth_grant_can_write(ss->grant, e->collection))
        return "forbidden collection: not writable with this token";
    if (!valid_name(e->id, EVENT_ID_MAX))
        return "invalid event: id must be 1-256 bytes";
    if (!valid_name(e->document_id, DOCUMENT_ID_MAX))
        return "invalid event: document_id must be 1-512 bytes";
    if (e->type < NEBULA__SYNC__V1__EVENT_TYPE__EVENT_TYPE_INSERT ||
        e->type > NEBULA__SYNC__V1__EVENT_TYPE__EVENT_TYPE_DELETE)
        return "invalid event: type must be INSERT, UPDATE or DELETE";
    if (e->type != NEBULA__SYNC__V1__EVENT_TYPE__EVENT_TYPE_DELETE) {
        json_error_t error;
        json_t *doc = json_loadb((const char *)e->data.data, e->data.len, 0, &error);
        if (!doc)
            return "invalid event: data is not a JSON document";
        bool object = json_is_object(doc);
        json_decref(doc);
        if (!object)
            return "invalid event: data must be a JSON object";
    }
    return NULL;
}

static void to_sync_event(const sync_session *ss, const Nebula__Sync__V1__Event *e, sync_event *out)
{
    out->id = e->id;
    out->type = (sync_event_type)e->type;
    out->document_id = e->document_id;
    out->data = e->data.len ? e->data.data : NULL;
    out->data_len = e->data.len;
    out->timestamp_ms = e->timestamp;
    out->hlc = e->hlc;
    /* The session's identity, not what the event claims: own-event skipping
     * and conflict tie-breaks must not be spoofable. */
    out->client_id = ss->client_id ? ss->client_id : "";
    out->base_seq = e->base_seq;
    out->origin = session_tag(ss->s);
}

static push_request *push_request_new(sync_session *ss, const Nebula__Sync__V1__Push *m)
{
    push_request *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    size_t n = m->n_events;
    req->ss = ss;
    req->request_id = m->request_id;
    req->count = n;
    req->results = calloc(n, sizeof *req->results);
    req->result_ptrs = calloc(n, sizeof *req->result_ptrs);
    req->winners = calloc(n, sizeof *req->winners);
    req->event_ids = calloc(n, sizeof *req->event_ids);
    req->collections = calloc(n, sizeof *req->collections);
    req->events = calloc(n, sizeof *req->events);
    req->owned_strings = calloc(n * 3, sizeof *req->owned_strings);
    if (!req->results || !req->result_ptrs || !req->winners || !req->event_ids ||
        !req->collections || !req->events || !req->owned_strings) {
        push_request_free(req);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        nebula__sync__v1__event_result__init(&req->results[i]);
        nebula__sync__v1__document__init(&req->winners[i]);
        req->result_ptrs[i] = &req->results[i];
        req->event_ids[i] = strdup(m->events[i]->id ? m->events[i]->id : "");
        req->collections[i] = strdup(m->events[i]->collection ? m->events[i]->collection : "");
        if (!req->event_ids[i] || !req->collections[i]) {
            push_request_free(req);
            return NULL;
        }
        req->results[i].event_id = req->event_ids[i];
    }
    return req;
}

static sync_conflict_strategy strategy_for(const broker_context *broker, const char *collection)
{
    for (size_t i = 0; i < broker->conflict_rule_count; i++)
        if (fnmatch(broker->conflict_rules[i].pattern, collection, 0) == 0)
            return broker->conflict_rules[i].strategy;
    return broker->conflict_strategy;
}

/* Consecutive valid events of one collection go to storage in one call. */
static void save_runs(push_request *req, const Nebula__Sync__V1__Push *m, const bool *valid)
{
    sync_session *ss = req->ss;
    sync_storage *storage = ss->worker->broker->storage;
    size_t i = 0;
    while (i < req->count) {
        if (!valid[i]) {
            i++;
            continue;
        }
        size_t end = i + 1;
        while (end < req->count && valid[end] &&
               strcmp(m->events[end]->collection, m->events[i]->collection) == 0)
            end++;
        push_call *call = malloc(sizeof *call);
        if (!call) {
            for (size_t k = i; k < end; k++)
                reject(req, k, "server out of memory");
            i = end;
            continue;
        }
        call->req = req;
        call->first = i;
        call->count = end - i;
        req->pending_calls++;
        storage->ops->save_events(storage->ctx, ss->grant->tenant, m->events[i]->collection,
                                  strategy_for(ss->worker->broker, m->events[i]->collection),
                                  &req->events[i], end - i,
                                  on_saved, call);
        i = end;
    }
}

static void handle_push(sync_session *ss, const Nebula__Sync__V1__Push *m)
{
    if (m->n_events == 0 || m->n_events > EVENTS_PER_PUSH) {
        send_error(ss, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_LIMIT_EXCEEDED,
                   "Push carries 1 to 1000 events");
        return;
    }
    push_request *req = push_request_new(ss, m);
    bool *valid = req ? calloc(m->n_events, sizeof *valid) : NULL;
    if (!valid) {
        if (req)
            push_request_free(req);
        send_error(ss, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_LIMIT_EXCEEDED, "out of memory");
        return;
    }
    for (size_t i = 0; i < req->count; i++) {
        const char *why = check_event(ss, m->events[i]);
        valid[i] = why == NULL;
        if (why)
            reject(req, i, why);
        else
            to_sync_event(ss, m->events[i], &req->events[i]);
    }
    /* One extra pending call keeps the request alive until every run has
     * been handed to storage, whether storage answers inline or later. */
    req->pending_calls = 1;
    session_hold(ss->s);
    save_runs(req, m, valid);
    free(valid);
    finish_push_call(req);
}

/* ---- Hello ----------------------------------------------------------------- */

static const auth_grant *authenticate(sync_session *ss, const char *token, char *why, size_t why_len)
{
    broker_context *broker = ss->worker->broker;
    if (broker->auth_mode == BROKER_AUTH_NONE)
        return &broker->anonymous_grant;
    if (!token || !*token) {
        snprintf(why, why_len, "a token is required (Hello.auth_token or Authorization: Bearer)");
        return NULL;
    }
    ss->owned_grant = malloc(sizeof *ss->owned_grant);
    if (!ss->owned_grant) {
        snprintf(why, why_len, "out of memory");
        return NULL;
    }
    bool ok = broker->auth_mode == BROKER_AUTH_TOKENS
                  ? token_table_lookup(broker->tokens, token, strlen(token), ss->owned_grant)
                  : broker->authenticate(broker->authenticate_data, token, ss->client_id,
                                         ss->owned_grant);
    if (!ok) {
        free(ss->owned_grant);
        ss->owned_grant = NULL;
        snprintf(why, why_len, "token rejected");
        return NULL;
    }
    return ss->owned_grant;
}

static void handle_hello(sync_session *ss, const Nebula__Sync__V1__Hello *hello)
{
    if (ss->hello_done) {
        send_error(ss, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_ALREADY_HELLO,
                   "Hello was already accepted on this session");
        return;
    }
    if (hello->client_id && strlen(hello->client_id) > CLIENT_ID_MAX) {
        send_error(ss, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_INVALID_REQUEST,
                   "client_id is longer than 256 bytes");
        return;
    }
    ss->client_id = strdup(hello->client_id ? hello->client_id : "");
    const char *token = hello->auth_token && *hello->auth_token ? hello->auth_token : ss->header_token;
    char why[160];
    ss->grant = ss->client_id ? authenticate(ss, token, why, sizeof why) : NULL;
    if (!ss->grant) {
        send_error(ss, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNAUTHENTICATED,
                   ss->client_id ? why : "out of memory");
        session_fail(ss->s, 1008, "authentication failed");
        return;
    }
    ss->hello_done = true;
    session_send_welcome(ss->s, ss->grant->tenant);
}

void sync_session_handle(sync_session *ss, const Nebula__Sync__V1__ClientMessage *message)
{
    if (message->message_case == NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_HELLO) {
        handle_hello(ss, message->hello);
        return;
    }
    if (message->message_case == NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE__NOT_SET) {
        send_error(ss, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
                   "ClientMessage carries no message this server handles");
        return;
    }
    if (!ss->hello_done) {
        send_error(ss, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_HELLO_REQUIRED,
                   "send Hello first");
        return;
    }
    switch (message->message_case) {
    case NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_SUBSCRIBE:
        handle_subscribe(ss, message->subscribe);
        break;
    case NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_UNSUBSCRIBE:
        handle_unsubscribe(ss, message->unsubscribe);
        break;
    case NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_PUSH:
        handle_push(ss, message->push);
        break;
    default:
        send_error(ss, NEBULA__SYNC__V1__ERROR_CODE__ERROR_CODE_UNSUPPORTED,
                   "ClientMessage carries no message this server handles");
        break;
    }
}
