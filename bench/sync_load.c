/* sync_load: see sync_load.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "sync_load.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/ssl.h>

#include "event_format.h"
#include "peer_events.h"
#include "events_scan.h"
#include "seq_check.h"
#include "sync_messages.h"
#include "ws_frame.h"
#include "ws_handshake.h"

#define FD_MARGIN 100                 /* fds kept free for stdio, epoll, /proc reads... */
#define MAX_RESPONSE_HEAD 8192
#define MAX_MESSAGE (64u << 20)       /* largest server message we accept */
#define RAMP_PER_THREAD 256           /* handshakes in flight per thread while connecting */
#define HANDSHAKE_TIMEOUT_S 20        /* one connection: TCP connect .. snapshot done */
#define CLOSE_WAIT_S 2
#define STOP_GRACE_S 3
#define ARENA_BYTES (8u << 20)
#define READ_CHUNK (64 * 1024)        /* bytes per read() once a connection is ready */

/* ------------------------------------------------------------------------ */
/* randomness                                                               */

/* xorshift64*: masking keys only need to be unpredictable to a proxy, not
 * cryptographically strong; seeded from RAND_bytes per thread. */
static inline uint64_t xs_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* ------------------------------------------------------------------------ */
/* protobuf-c arena: a ServerMessage is unpacked into it, used, and the arena */
/* is reset, so decoding costs no malloc/free per field.                     */

struct arena {
    uint8_t *buf;
    size_t cap, used;
    void **big;                       /* overflow allocations, freed on reset */
    size_t nbig, capbig;
};

static void *arena_alloc(void *data, size_t size)
{
    struct arena *a = data;
    size_t need = (size + 15) & ~(size_t)15;
    if (need <= a->cap - a->used) {
        void *p = a->buf + a->used;
        a->used += need;
        return p;
    }
    if (a->nbig == a->capbig) {
        size_t cap = a->capbig ? a->capbig * 2 : 16;
        void **grown = realloc(a->big, cap * sizeof *grown);
        if (!grown)
            return NULL;
        a->big = grown;
        a->capbig = cap;
    }
    void *p = malloc(size);
    if (p)
        a->big[a->nbig++] = p;
    return p;
}

static void arena_free(void *data, void *p)
{
    (void)data;
    (void)p;                          /* everything goes at arena_reset */
}

static void arena_reset(struct arena *a)
{
    a->used = 0;
    for (size_t i = 0; i < a->nbig; i++)
        free(a->big[i]);
    a->nbig = 0;
}

/* ------------------------------------------------------------------------ */
/* shared state                                                              */

static struct sync_load_config cfg;   /* set by sync_load_init(), then read-only */
static _Atomic int phase = SYNC_LOAD_SETUP;
static _Atomic uint64_t window_start_ns = UINT64_MAX;   /* publish times in [start, end) */
static _Atomic uint64_t window_end_ns = UINT64_MAX;     /* are recorded in the histograms */

static struct bench_dest dest;        /* the broker; sources 127.0.X.Y if loopback */
static struct bench_dest publish_dest; /* where publishers connect (dest unless told otherwise) */
static SSL_CTX *ssl_ctx;
static struct fanout_params params;   /* the scenario, for the peer targets */
static _Atomic uint32_t max_message_size;  /* from Welcome.limits; 0 until known */
static _Atomic uint64_t *stream_max_seq;   /* per stream: highest ACCEPTED seq */

/* What the scenario's thread asks the client threads to do next, and what
 * they found out for it: written and read under ctl_lock. */
static pthread_mutex_t ctl_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sync_load_publish publish_req = {.stream = -1};
static struct {
    long stream;
    bool has_cursor;
    struct sync_load_cursor cursor;
} subscribe_req;
static struct sync_load_cursor *stream_heads;   /* per stream, once known */
static bool *stream_head_known;

enum cstate { ST_TCP, ST_TLS, ST_HTTP, ST_WELCOME, ST_SUBSCRIBING, ST_READY, ST_CLOSING, ST_DONE };
enum role { ROLE_SUB, ROLE_PUB };

struct worker;

struct slot {                         /* one Push in flight */
    uint64_t request_id;
    uint64_t sent_ns;
    long events;                      /* in that Push */
};

/* A publisher; owned by its connection's thread. */
struct pub {
    long index;                       /* 0..P-1 */
    uint64_t next_request_id;
    uint64_t counter;                 /* events pushed so far */
    uint64_t stop_at;                 /* counter at which to stop; UINT64_MAX: never */
    bool distinct_documents;          /* a document per event, not cycling */
    uint64_t hlc;
    long inflight;
    struct slot *slots;               /* cfg.inflight entries; request_id 0 = free */
    Nebula__Sync__V1__Event *events;  /* cfg.batch, reused for every Push */
    Nebula__Sync__V1__Event **event_ptrs;
    char (*ids)[40];
    char (*doc_ids)[EVENT_DOC_ID_MAX];
    uint8_t *data;                    /* cfg.batch documents of cfg.size bytes */
    uint8_t *packbuf;
    size_t packcap;
    size_t batch_bytes;               /* unacked targets: the last batch's frame */
    struct event *timer;              /* --rate pacing */
    uint64_t interval_ns;             /* --rate: between two Pushes of this publisher */
    uint64_t next_due_ns;
};

/* One connection; owned by its worker's thread. */
struct fanout_conn {
    struct worker *w;
    enum role role;
    long index;                       /* subscriber or publisher index */
    atomic_long stream;               /* relaxed: the main thread reads it for drain checks */
    int fd;
    struct event *cev;
    struct bufferevent *bev;
    struct event *rev;                /* our own read event once ready (plain TCP) */
    enum cstate state;
    bool live;
    ws_reader rd;
    char accept[WS_ACCEPT_KEY_LEN + 1];
    uint8_t *frag;                    /* a fragmented message being reassembled */
    size_t frag_len, frag_cap;

    /* subscriber */
    bool started;                     /* its subscription has a start: seq is meaningful */
    bool awaiting_start;              /* a Subscribe is out and has not started yet */
    bool replay_expected;             /* that Subscribe carried a cursor */
    uint64_t cursor_seq;              /* ... this one */
    uint64_t subscribe_ns;            /* when it was written */
    bool resnapshot;                  /* a later Subscribed: a snapshot is coming */
    struct seq_stream seq;            /* nebula: the collection's seqs */
    struct seq_table table;           /* peer targets: one stream per publisher */
    _Atomic uint64_t last_seq_shared; /* seq.last or table.position, for the drain check */
    uint64_t received, skipped, foreign;
    uint32_t resnapshots;

    /* publisher */
    struct pub *pub;

    void *peer;                       /* the peer target's state for this connection */
};

struct worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct event *phase_ev;
    struct event *subscribe_ev;
    struct event *grace_ev;
    struct fanout_conn *conns;        /* this thread's subscribers, then its publishers */
    long nconns, nsubs;
    long launched;                    /* conns started so far */
    long handshaking;
    long live;
    bool closing;
    uint64_t xs;                      /* PRNG state */
    struct arena arena;
    ProtobufCAllocator alloc;
    hist lat;                         /* publish -> deliver, window only */
    hist ack;                         /* Push written -> PushResult read, window only */

    /* written by this thread, read by the main thread while running */
    atomic_long ready_subs, ready_pubs, started_subs;
    atomic_long failed[SYNC_LOAD_FAIL_KINDS];
    _Atomic uint64_t delivered;       /* events received by subscribers */
    _Atomic uint64_t lost, dup;
    _Atomic uint64_t pushes_sent, pushes_acked;
    _Atomic uint64_t events_accepted, events_not_accepted;
    atomic_long inflight;             /* Push messages awaiting a result */
    _Atomic uint64_t sched_slips;     /* --rate: a publisher fell > 100 ms behind */
    atomic_bool stopped;              /* SYNC_LOAD_STOP seen: its publishers send nothing more */

    /* read after join */
    char first_err[SYNC_LOAD_FAIL_KINDS][256];
    char first_reject[256];
    uint64_t n_duplicate, n_conflict, n_rejected;
};

static struct worker *workers;

static const char *stream_collection(const struct fanout_conn *c)
{
    return cfg.streams[atomic_load_explicit(&c->stream, memory_order_relaxed)].collection;
}

/* ------------------------------------------------------------------------ */
/* connections: failure, freeing                                             */

static void refill(struct worker *w);
static void pub_pump(struct fanout_conn *c);
static void fast_read_start(struct fanout_conn *c);

static void conn_release(struct fanout_conn *c)
{
    struct worker *w = c->w;
    if (!c->live)
        return;
    if (c->state < ST_READY)
        w->handshaking--;
    c->live = false;
    c->state = ST_DONE;
    if (c->cev) {
        event_free(c->cev);
        c->cev = NULL;
    }
    if (c->rev) {
        event_free(c->rev);
        c->rev = NULL;
    }
    if (c->bev) {
        bufferevent_free(c->bev);
        c->bev = NULL;
    } else if (c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    free(c->frag);
    c->frag = NULL;
    if (c->pub && c->pub->timer)
        evtimer_del(c->pub->timer);
    if (c->pub && c->pub->inflight) {
        atomic_fetch_sub_explicit(&w->inflight, c->pub->inflight, memory_order_relaxed);
        c->pub->inflight = 0;
    }
    w->live--;
    if (w->closing) {
        if (w->live == 0)
            event_base_loopbreak(w->base);
        return;
    }
    refill(w);
}

/* A connection failed: counted as a setup failure before the run, as a run
 * failure (a subscriber or publisher lost) after; the first error of each
 * kind is kept verbatim. Always returns false (the conn is gone). */
static bool conn_fail(struct fanout_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool conn_fail(struct fanout_conn *c, const char *fmt, ...)
{
    struct worker *w = c->w;
    if (w->closing || c->state == ST_CLOSING) {   /* we are closing it anyway */
        conn_release(c);
        return false;
    }
    enum sync_load_fail k = atomic_load_explicit(&phase, memory_order_relaxed) == SYNC_LOAD_SETUP
                                ? SYNC_LOAD_FAIL_SETUP : SYNC_LOAD_FAIL_RUN;
    if (atomic_fetch_add_explicit(&w->failed[k], 1, memory_order_relaxed) == 0) {
        char msg[200];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        snprintf(w->first_err[k], sizeof w->first_err[k], "%s %ld: %s",
                 c->role == ROLE_SUB ? "subscriber" : "publisher", c->index, msg);
    }
    conn_release(c);
    return false;
}

/* ------------------------------------------------------------------------ */
/* sending                                                                   */

static void new_mask(struct fanout_conn *c, uint8_t mask[4])
{
    uint64_t r = xs_next(&c->w->xs);
    memcpy(mask, &r, 4);
}

/* Masks buf[hlen..hlen+len) and writes the header in front of it; then sends
 * the whole frame with one copy into the bufferevent. */
static void send_framed(struct fanout_conn *c, uint8_t opcode, uint8_t *buf, size_t hlen, size_t len)
{
    uint8_t mask[4];
    new_mask(c, mask);
    bench_ws_send_masked(c->bev, opcode, buf, hlen, len, mask);
}

static void send_small(struct fanout_conn *c, uint8_t opcode, const uint8_t *payload, size_t len)
{
    uint8_t frame[WS_MAX_HEADER_LEN + WS_MAX_CONTROL_PAYLOAD];
    if (len > WS_MAX_CONTROL_PAYLOAD)
        return;
    size_t hlen = bench_ws_header_len(len);
    memcpy(frame + hlen, payload, len);
    send_framed(c, opcode, frame, hlen, len);
}

static void send_hello(struct fanout_conn *c)
{
    char id[FANOUT_CLIENT_ID_MAX];
    uint8_t mask[4];
    fanout_conn_client_id(c, id);
    new_mask(c, mask);
    long stream = atomic_load_explicit(&c->stream, memory_order_relaxed);
    if (!sync_msg_send_hello(c->bev, mask, id, cfg.streams[stream].token,
                             SYNC_LOAD_PROGRAM " " NEBULA_VERSION))
        conn_fail(c, "out of memory");
}

/* Subscribes to the connection's stream, from cursor or (NULL) for a
 * snapshot; the subscription starts at Subscribed(REPLAY) or at the last
 * Snapshot page. */
static void send_subscribe(struct fanout_conn *c, const struct sync_load_cursor *cursor)
{
    uint8_t mask[4];
    new_mask(c, mask);
    c->started = false;
    c->awaiting_start = true;
    c->replay_expected = cursor != NULL;
    c->cursor_seq = cursor ? cursor->seq : 0;
    c->subscribe_ns = bench_mono_ns();
    struct sync_msg_cursor at = {cursor ? cursor->seq : 0, cursor ? cursor->epoch : NULL};
    if (!sync_msg_send_subscribe(c->bev, mask, stream_collection(c), cursor ? &at : NULL))
        conn_fail(c, "out of memory");
}

static void close_politely(struct fanout_conn *c)
{
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
    size_t n = ws_close_payload_write(payload, WS_CLOSE_NORMAL, "bench done");
    if (c->state < ST_READY)
        c->w->handshaking--;
    c->state = ST_CLOSING;
    send_small(c, WS_OP_CLOSE, payload, n);
    struct timeval tv = {CLOSE_WAIT_S, 0};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
}

/* ------------------------------------------------------------------------ */
/* publishers                                                                */

static void on_pub_timer(evutil_socket_t fd, short what, void *arg);

/* nebula-syncd: the K protobuf events of a Push, reused for every Push. */
static void pub_prepare_push(struct pub *p)
{
    size_t k = (size_t)cfg.batch;
    p->events = calloc(k, sizeof *p->events);
    p->event_ptrs = calloc(k, sizeof *p->event_ptrs);
    p->ids = calloc(k, sizeof *p->ids);
    p->doc_ids = calloc(k, sizeof *p->doc_ids);
    p->data = malloc(k * (size_t)cfg.size);
    if (!p->events || !p->event_ptrs || !p->ids || !p->doc_ids || !p->data)
        bench_die(1, "out of memory");
    for (size_t i = 0; i < k; i++) {
        nebula__sync__v1__event__init(&p->events[i]);
        p->event_ptrs[i] = &p->events[i];
        event_doc_fill(p->data + i * (size_t)cfg.size, (size_t)cfg.size, p->index);
        p->events[i].id = p->ids[i];
        p->events[i].document_id = p->doc_ids[i];
        p->events[i].data.data = p->data + i * (size_t)cfg.size;
        p->events[i].data.len = (size_t)cfg.size;
        p->events[i].client_id = "";
    }
}

static struct pub *pub_new(struct fanout_conn *c, long index)
{
    struct worker *w = c->w;
    struct pub *p = calloc(1, sizeof *p);
    if (!p)
        bench_die(1, "out of memory");
    p->index = index;
    p->next_request_id = 1;
    p->stop_at = UINT64_MAX;
    p->slots = calloc((size_t)cfg.inflight, sizeof *p->slots);
    if (!p->slots)
        bench_die(1, "out of memory");
    if (!cfg.target)
        pub_prepare_push(p);          /* a peer target writes its own batches */
    if (cfg.rate > 0) {
        double per_pub = cfg.rate / (double)cfg.publishers;          /* events/s */
        double iv = 1e9 * (double)cfg.batch / per_pub;
        p->interval_ns = iv < 1 ? 1 : (uint64_t)iv;
        p->timer = evtimer_new(w->base, on_pub_timer, c);
        if (!p->timer)
            bench_die(1, "evtimer_new failed");
    }
    return p;
}

static void pub_free(struct pub *p)
{
    if (!p)
        return;
    if (p->timer)
        event_free(p->timer);
    free(p->slots);
    free(p->events);
    free(p->event_ptrs);
    free(p->ids);
    free(p->doc_ids);
    free(p->data);
    free(p->packbuf);
    free(p);
}

/* What the scenario asked for this run phase: the stream, how many events
 * from now, which documents. */
static void pub_apply(struct fanout_conn *c, const struct sync_load_publish *req)
{
    struct pub *p = c->pub;
    long stream = req->stream >= 0 ? req->stream : p->index % cfg.nstreams;
    atomic_store_explicit(&c->stream, stream, memory_order_relaxed);
    p->distinct_documents = req->distinct_documents;
    p->stop_at = req->events ? p->counter + req->events : UINT64_MAX;
    if (!cfg.target)
        for (long i = 0; i < cfg.batch; i++)
            p->events[i].collection = (char *)cfg.streams[stream].collection;
}

static struct slot *free_slot(struct pub *p)
{
    for (long i = 0; i < cfg.inflight; i++)
        if (p->slots[i].request_id == 0)
            return &p->slots[i];
    return NULL;
}

/* Event n of publisher p: its id, document, type and clocks. */
static void fill_event(struct pub *p, Nebula__Sync__V1__Event *e, long i, uint64_t n, uint64_t ts,
                       uint64_t wall)
{
    event_id_write(p->ids[i], cfg.run_id, (uint32_t)p->index, n);
    bool cycling = !p->distinct_documents;
    event_doc_id_write(p->doc_ids[i], p->index, cycling ? n % EVENT_DOCS_PER_PUBLISHER : n);
    e->type = !cycling || n < EVENT_DOCS_PER_PUBLISHER ? NEBULA__SYNC__V1__EVENT_TYPE__EVENT_TYPE_INSERT
                                                       : NEBULA__SYNC__V1__EVENT_TYPE__EVENT_TYPE_UPDATE;
    event_doc_set_ts(e->data.data, ts);
    e->timestamp = (int64_t)(wall / 1000000u);
    p->hlc = wall > p->hlc ? wall : p->hlc + 1;   /* strictly increasing: LWW accepts */
    e->hlc = p->hlc;
}

/* Fills the batch's events (ids, documents, timestamps) and sends one Push:
 * K events, fewer when the publisher's limit is closer. */
static bool send_push(struct fanout_conn *c)
{
    struct worker *w = c->w;
    struct pub *p = c->pub;
    struct slot *slot = free_slot(p);
    if (!slot)
        return true;                  /* cannot happen: inflight < W */
    long k = p->stop_at - p->counter < (uint64_t)cfg.batch ? (long)(p->stop_at - p->counter) : cfg.batch;
    uint64_t ts = bench_mono_ns();
    uint64_t wall = bench_wall_ns();
    for (long i = 0; i < k; i++)
        fill_event(p, &p->events[i], i, p->counter++, ts, wall);
    Nebula__Sync__V1__Push push = NEBULA__SYNC__V1__PUSH__INIT;
    push.request_id = p->next_request_id++;
    push.n_events = (size_t)k;
    push.events = p->event_ptrs;
    Nebula__Sync__V1__ClientMessage m = NEBULA__SYNC__V1__CLIENT_MESSAGE__INIT;
    m.message_case = NEBULA__SYNC__V1__CLIENT_MESSAGE__MESSAGE_PUSH;
    m.push = &push;
    size_t len = nebula__sync__v1__client_message__get_packed_size(&m);
    uint32_t limit = atomic_load_explicit(&max_message_size, memory_order_relaxed);
    if (limit && len > limit)
        return conn_fail(c, "a Push of %zu bytes exceeds the broker's max_message_size %u: lower "
                         "--batch or --size", len, limit);
    size_t hlen = bench_ws_header_len(len);
    if (hlen + len > p->packcap) {
        uint8_t *grown = realloc(p->packbuf, hlen + len);
        if (!grown)
            return conn_fail(c, "out of memory");
        p->packbuf = grown;
        p->packcap = hlen + len;
    }
    nebula__sync__v1__client_message__pack(&m, p->packbuf + hlen);
    slot->request_id = push.request_id;
    slot->sent_ns = bench_mono_ns();
    slot->events = k;
    send_framed(c, WS_OP_BINARY, p->packbuf, hlen, len);
    p->inflight++;
    atomic_fetch_add_explicit(&w->inflight, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->pushes_sent, 1, memory_order_relaxed);
    return true;
}

/* A peer target's batch: the driver numbers it and keeps its slot (acked
 * targets) or counts it done once written (the others). */
static bool send_peer_batch(struct fanout_conn *c)
{
    struct worker *w = c->w;
    struct pub *p = c->pub;
    struct slot *slot = NULL;
    if (cfg.target->acked && !(slot = free_slot(p)))
        return true;                  /* cannot happen: inflight < W */
    uint64_t first = p->counter, request_id = p->next_request_id++;
    size_t unsent = fanout_conn_unsent(c);
    p->counter += (uint64_t)cfg.batch;
    if (!cfg.target->send_batch(c, c->peer, request_id, first, bench_mono_ns()))
        return false;
    atomic_fetch_add_explicit(&w->pushes_sent, 1, memory_order_relaxed);
    if (slot) {
        slot->request_id = request_id;
        slot->sent_ns = bench_mono_ns();
        slot->events = cfg.batch;
        p->inflight++;
        atomic_fetch_add_explicit(&w->inflight, 1, memory_order_relaxed);
        return true;
    }
    p->batch_bytes = fanout_conn_unsent(c) - unsent;
    atomic_fetch_add_explicit(&w->pushes_acked, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->events_accepted, (uint64_t)cfg.batch, memory_order_relaxed);
    return true;
}

/* Whether a publisher may send a batch now (the phase and --rate aside):
 * below its event limit, and fewer than W unanswered, or for targets that
 * answer nothing, fewer than W batches' bytes still in the tool's output
 * buffer. */
static bool pub_may_send(struct fanout_conn *c)
{
    struct pub *p = c->pub;
    if (p->counter >= p->stop_at)
        return false;
    if (!cfg.target || cfg.target->acked)
        return p->inflight < cfg.inflight;
    return fanout_conn_unsent(c) < (size_t)cfg.inflight * p->batch_bytes || p->batch_bytes == 0;
}

static void on_pub_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pub_pump(arg);
}

/* Sends Pushes while the phase allows, fewer than W are in flight and (with
 * --rate) one is due. */
static void pub_pump(struct fanout_conn *c)
{
    struct pub *p = c->pub;
    if (!c->live || c->state != ST_READY)
        return;
    while (atomic_load_explicit(&phase, memory_order_relaxed) == SYNC_LOAD_RUN && pub_may_send(c)) {
        if (p->interval_ns) {
            uint64_t now = bench_mono_ns();
            if (now < p->next_due_ns) {
                uint64_t d = p->next_due_ns - now;
                struct timeval tv = {(time_t)(d / 1000000000u), (suseconds_t)((d % 1000000000u) / 1000u)};
                evtimer_add(p->timer, &tv);
                return;
            }
            if (now - p->next_due_ns > 100000000u) {   /* > 100 ms behind: do not burst */
                atomic_fetch_add_explicit(&c->w->sched_slips, 1, memory_order_relaxed);
                p->next_due_ns = now;
            }
            p->next_due_ns += p->interval_ns;
        }
        if (!(cfg.target ? send_peer_batch(c) : send_push(c)))
            return;
    }
}

static struct slot *find_slot(struct pub *p, uint64_t request_id)
{
    for (long i = 0; i < cfg.inflight; i++)
        if (p->slots[i].request_id == request_id && request_id != 0)
            return &p->slots[i];
    return NULL;
}

/* The answer to a batch came: its latency (window only), a free slot. */
static void settle_slot(struct fanout_conn *c, struct slot *slot, uint64_t now)
{
    struct worker *w = c->w;
    uint64_t ws = atomic_load_explicit(&window_start_ns, memory_order_relaxed);
    uint64_t we = atomic_load_explicit(&window_end_ns, memory_order_relaxed);
    if (slot->sent_ns >= ws && slot->sent_ns < we)
        hist_record(&w->ack, now - slot->sent_ns);
    slot->request_id = 0;
    c->pub->inflight--;
    atomic_fetch_sub_explicit(&w->inflight, 1, memory_order_relaxed);
}

/* The stream's highest accepted seq, raised to seq (publishers of one
 * stream may run on several threads). */
static void stream_saw_seq(long stream, uint64_t seq)
{
    _Atomic uint64_t *m = &stream_max_seq[stream];
    uint64_t cur = atomic_load_explicit(m, memory_order_relaxed);
    while (seq > cur &&
           !atomic_compare_exchange_weak_explicit(m, &cur, seq, memory_order_relaxed, memory_order_relaxed))
        ;
}

static bool on_push_result(struct fanout_conn *c, const Nebula__Sync__V1__PushResult *r, uint64_t now)
{
    struct worker *w = c->w;
    struct pub *p = c->pub;
    if (c->role != ROLE_PUB)
        return conn_fail(c, "PushResult on a subscriber connection");
    struct slot *slot = find_slot(p, r->request_id);
    if (!slot)
        return conn_fail(c, "PushResult for unknown request_id %" PRIu64, r->request_id);
    if (r->n_results != (size_t)slot->events)
        return conn_fail(c, "PushResult with %zu results for %ld events", r->n_results, slot->events);
    settle_slot(c, slot, now);
    uint64_t accepted = 0, maxseq = 0;
    for (size_t i = 0; i < r->n_results; i++) {
        const Nebula__Sync__V1__EventResult *er = r->results[i];
        switch (er->status) {
        case NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_ACCEPTED:
            accepted++;
            if (er->seq > maxseq)
                maxseq = er->seq;
            continue;
        case NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_DUPLICATE: w->n_duplicate++; break;
        case NEBULA__SYNC__V1__PUSH_STATUS__PUSH_STATUS_CONFLICT: w->n_conflict++; break;
        default: w->n_rejected++; break;
        }
        if (!w->first_reject[0])
            snprintf(w->first_reject, sizeof w->first_reject, "status %d: %s", (int)er->status,
                     er->reason && *er->reason ? er->reason : "(no reason)");
    }
    atomic_fetch_add_explicit(&w->pushes_acked, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->events_accepted, accepted, memory_order_relaxed);
    if (accepted < r->n_results)
        atomic_fetch_add_explicit(&w->events_not_accepted, r->n_results - accepted,
                                  memory_order_relaxed);
    stream_saw_seq(atomic_load_explicit(&c->stream, memory_order_relaxed), maxseq);
    pub_pump(c);
    return c->live;
}

/* ------------------------------------------------------------------------ */
/* subscribers                                                               */

static void sub_set_position(struct fanout_conn *c, uint64_t seq)
{
    c->seq.last = seq;
    atomic_store_explicit(&c->last_seq_shared, seq, memory_order_relaxed);
}

/* A subscription starts: from now on every seq is checked. */
static void sub_mark_started(struct fanout_conn *c)
{
    c->started = true;
    c->awaiting_start = false;
    atomic_fetch_add_explicit(&c->w->started_subs, 1, memory_order_relaxed);
}

/* The first subscriber of a stream to finish its setup snapshot tells the
 * scenario where the stream stood (a cursor to replay from later). */
static void record_stream_head(const struct fanout_conn *c, uint64_t seq, const char *epoch)
{
    long stream = atomic_load_explicit(&c->stream, memory_order_relaxed);
    pthread_mutex_lock(&ctl_lock);
    if (!stream_head_known[stream]) {
        stream_heads[stream].seq = seq;
        snprintf(stream_heads[stream].epoch, sizeof stream_heads[stream].epoch, "%s",
                 epoch ? epoch : "");
        stream_head_known[stream] = true;
    }
    pthread_mutex_unlock(&ctl_lock);
}

static bool on_subscribed(struct fanout_conn *c, const Nebula__Sync__V1__Subscribed *s)
{
    if (c->role != ROLE_SUB)
        return conn_fail(c, "Subscribed on a publisher connection");
    if (!s->collection || strcmp(s->collection, stream_collection(c)) != 0)
        return conn_fail(c, "Subscribed for collection '%s'", s->collection ? s->collection : "");
    if (s->mode != NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_SNAPSHOT &&
        s->mode != NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_REPLAY)
        return conn_fail(c, "Subscribed with mode %d", (int)s->mode);
    if (!c->started) {
        if (!c->awaiting_start)
            return conn_fail(c, "unexpected Subscribed");
        if (c->replay_expected) {
            if (s->mode != NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_REPLAY)
                return conn_fail(c, "Subscribed in mode %d, expected REPLAY after cursor seq %" PRIu64
                                 " (the broker no longer holds it, or its epoch changed)",
                                 (int)s->mode, c->cursor_seq);
            sub_set_position(c, c->cursor_seq);   /* the replay starts right after it */
            sub_mark_started(c);
            return true;
        }
        if (s->mode != NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_SNAPSHOT)
            return conn_fail(c, "Subscribed in mode %d, expected SNAPSHOT (no cursor was sent)",
                             (int)s->mode);
        return true;                  /* the snapshot's last page starts us */
    }
    /* The broker restarted this subscription (it fell behind what storage
     * retains): a snapshot follows. Seqs it skips count as lost. */
    c->resnapshots++;
    c->resnapshot = true;
    return true;
}

static bool on_snapshot(struct fanout_conn *c, const Nebula__Sync__V1__Snapshot *s, uint64_t now)
{
    struct worker *w = c->w;
    if (c->role != ROLE_SUB)
        return conn_fail(c, "Snapshot on a publisher connection");
    if (cfg.on_snapshot)
        cfg.on_snapshot(c, s, now);
    if (!s->last)
        return true;
    if (!s->cursor)
        return conn_fail(c, "last Snapshot page without a cursor");
    uint64_t pos = s->cursor->seq;
    if (!c->started) {
        if (!c->awaiting_start)
            return conn_fail(c, "Snapshot before Subscribed");
        sub_set_position(c, pos);
        if (c->state == ST_SUBSCRIBING) {
            record_stream_head(c, pos, s->cursor->epoch);
            return fanout_conn_ready(c);
        }
        sub_mark_started(c);
        return true;
    }
    c->resnapshot = false;
    if (pos > c->seq.last) {
        c->skipped += pos - c->seq.last;
        atomic_fetch_add_explicit(&w->lost, pos - c->seq.last, memory_order_relaxed);
        sub_set_position(c, pos);
    }
    return true;
}

/* Every seq checked, every event of the window timed; lost and duplicated
 * seqs counted for the whole message. */
struct events_delivery {
    struct fanout_conn *c;
    uint64_t now, window_start, window_end;
    uint64_t lost0, dup0, received0;
};

static void events_begin(struct fanout_conn *c, struct events_delivery *d, uint64_t now)
{
    *d = (struct events_delivery){
        .c = c,
        .now = now,
        .window_start = atomic_load_explicit(&window_start_ns, memory_order_relaxed),
        .window_end = atomic_load_explicit(&window_end_ns, memory_order_relaxed),
        .lost0 = c->seq.lost,
        .dup0 = c->seq.dup,
        .received0 = c->received,
    };
}

static bool events_expected(struct fanout_conn *c, const char *collection, size_t collection_len)
{
    if (c->role != ROLE_SUB)
        return conn_fail(c, "Events on a publisher connection");
    if (!c->started)
        return conn_fail(c, "Events before the snapshot's last page");
    const char *mine = stream_collection(c);
    if (collection_len != strlen(mine) || memcmp(collection, mine, collection_len) != 0)
        return conn_fail(c, "Events of collection '%.*s'", (int)collection_len, collection);
    return true;
}

static void event_delivered(struct events_delivery *d, uint64_t seq, const uint8_t *data,
                            size_t len)
{
    struct fanout_conn *c = d->c;
    seq_stream_observe(&c->seq, seq);
    uint64_t ts;
    if (event_doc_ts(data, len, &ts)) {
        if (ts >= d->window_start && ts < d->window_end)
            hist_record(&c->w->lat, d->now > ts ? d->now - ts : 0);
    } else {
        c->foreign++;                 /* not written by this tool: no timestamp */
    }
    c->received++;
}

static void events_end(struct events_delivery *d)
{
    struct fanout_conn *c = d->c;
    struct worker *w = c->w;
    atomic_store_explicit(&c->last_seq_shared, c->seq.last, memory_order_relaxed);
    atomic_fetch_add_explicit(&w->delivered, c->received - d->received0, memory_order_relaxed);
    if (c->seq.lost != d->lost0)
        atomic_fetch_add_explicit(&w->lost, c->seq.lost - d->lost0, memory_order_relaxed);
    if (c->seq.dup != d->dup0)
        atomic_fetch_add_explicit(&w->dup, c->seq.dup - d->dup0, memory_order_relaxed);
}

/* For scenarios with an Events hook: the message decoded by protobuf-c. */
static bool on_events(struct fanout_conn *c, const Nebula__Sync__V1__Events *ev, uint64_t now)
{
    struct events_delivery d;
    events_begin(c, &d, now);
    const char *collection = ev->collection ? ev->collection : "";
    if (!events_expected(c, collection, strlen(collection)))
        return false;
    for (size_t i = 0; i < ev->n_events; i++)
        event_delivered(&d, ev->events[i]->seq, ev->events[i]->data.data, ev->events[i]->data.len);
    events_end(&d);
    if (cfg.on_events)
        cfg.on_events(c, ev, now);
    return true;
}

static void on_scanned_event(void *arg, const events_scan_event *e)
{
    event_delivered(arg, e->seq, e->data, e->data_len);
}

/* The hot path without a hook: events_scan reads seq and data straight from
 * the wire bytes (decoding every field with protobuf-c made the tool the
 * limit). EVENTS_SCAN_NOT_EVENTS: another message, to decode fully. */
static events_scan_result on_events_scanned(struct fanout_conn *c, const uint8_t *msg, size_t len,
                                            uint64_t now)
{
    struct events_delivery d;
    events_begin(c, &d, now);
    const uint8_t *collection;
    size_t collection_len;
    events_scan_result r = events_scan(msg, len, &collection, &collection_len, on_scanned_event, &d);
    if (r == EVENTS_SCAN_MALFORMED)
        conn_fail(c, "undecodable Events message (%zu bytes)", len);
    else if (r == EVENTS_SCAN_OK && events_expected(c, (const char *)collection, collection_len))
        events_end(&d);
    return r;
}

/* ------------------------------------------------------------------------ */
/* subscribers of the peer targets: events found in JSON                     */

struct json_delivery {
    struct fanout_conn *c;
    uint64_t now, window_start, window_end;
};

/* One event of this run: its publisher's stream checked, its latency timed. */
static void on_peer_event(void *arg, const struct peer_event *e)
{
    struct json_delivery *d = arg;
    struct fanout_conn *c = d->c;
    struct worker *w = c->w;
    if (e->pub >= (uint64_t)cfg.publishers) {
        c->foreign++;                 /* this run's id, yet no such publisher */
        return;
    }
    struct seq_stream *s = &c->table.streams[e->pub];
    uint64_t lost0 = s->lost;
    switch (seq_table_observe(&c->table, e->pub, e->counter + 1)) {
    case SEQ_IN_ORDER:
        break;
    case SEQ_GAP:
        atomic_fetch_add_explicit(&w->lost, s->lost - lost0, memory_order_relaxed);
        break;
    case SEQ_DUPLICATE:
        atomic_fetch_add_explicit(&w->dup, 1, memory_order_relaxed);
        break;
    }
    if (e->has_ts && e->ts_ns >= d->window_start && e->ts_ns < d->window_end)
        hist_record(&w->lat, d->now > e->ts_ns ? d->now - e->ts_ns : 0);
    c->received++;
}

void fanout_sub_events_json(struct fanout_conn *c, const uint8_t *json, size_t len, uint64_t now)
{
    struct json_delivery d = {
        .c = c,
        .now = now,
        .window_start = atomic_load_explicit(&window_start_ns, memory_order_relaxed),
        .window_end = atomic_load_explicit(&window_end_ns, memory_order_relaxed),
    };
    uint64_t before = c->received;
    c->foreign += peer_events_scan(json, len, cfg.run_id, on_peer_event, &d);
    atomic_fetch_add_explicit(&c->w->delivered, c->received - before, memory_order_relaxed);
    atomic_store_explicit(&c->last_seq_shared, c->table.position, memory_order_relaxed);
}

/* ------------------------------------------------------------------------ */
/* server messages                                                           */

static bool on_welcome(struct fanout_conn *c, const Nebula__Sync__V1__Welcome *wm)
{
    if (c->state != ST_WELCOME)
        return conn_fail(c, "unexpected Welcome");
    if (wm->limits && wm->limits->max_message_size)   /* same broker, same value */
        atomic_store_explicit(&max_message_size, wm->limits->max_message_size, memory_order_relaxed);
    if (c->role == ROLE_SUB && c->index < cfg.setup_subscribers) {
        c->state = ST_SUBSCRIBING;
        send_subscribe(c, NULL);
        return c->live;
    }
    return fanout_conn_ready(c);
}

static bool handle_message(struct fanout_conn *c, const uint8_t *p, size_t n)
{
    struct worker *w = c->w;
    uint64_t now = bench_mono_ns();
    if (!cfg.on_events && on_events_scanned(c, p, n, now) != EVENTS_SCAN_NOT_EVENTS)
        return c->live;
    Nebula__Sync__V1__ServerMessage *m = nebula__sync__v1__server_message__unpack(&w->alloc, n, p);
    if (!m) {
        arena_reset(&w->arena);
        return conn_fail(c, "undecodable ServerMessage (%zu bytes)", n);
    }
    bool alive = true;
    switch (m->message_case) {
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_EVENTS:
        alive = on_events(c, m->events, now);
        break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_PUSH_RESULT:
        alive = on_push_result(c, m->push_result, now);
        break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_WELCOME:
        alive = on_welcome(c, m->welcome);
        break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SUBSCRIBED:
        alive = on_subscribed(c, m->subscribed);
        break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SNAPSHOT:
        alive = on_snapshot(c, m->snapshot, now);
        break;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_ERROR:
        alive = conn_fail(c, "ServerMessage.error code %d '%s'", (int)m->error->code,
                          m->error->message ? m->error->message : "");
        break;
    default:
        alive = conn_fail(c, "ServerMessage with no known message (case %d)", (int)m->message_case);
        break;
    }
    arena_reset(&w->arena);           /* the message is freed: all of it lives in the arena */
    return alive;
}

/* One whole data message: nebula-syncd's protobuf, or the peer target's. */
static bool handle_data(struct fanout_conn *c, uint8_t *p, size_t n)
{
    if (cfg.target)
        return cfg.target->on_message(c, c->peer, p, n, bench_mono_ns());
    return handle_message(c, p, n);
}

/* Parses every complete frame in the input. Frames are looked at in place in
 * the first chunk of the evbuffer; only a frame that straddles chunks is
 * pulled up (copied) into one. */
static void process_frames(struct fanout_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            return;
        uint8_t *buf = v.iov_base;
        size_t avail = v.iov_len;
        ws_frame f;
        ws_read_status st = ws_reader_next(&c->rd, buf, avail, &f);
        while (st == WS_READ_NEED_MORE && f.need <= len) {
            buf = evbuffer_pullup(in, (ev_ssize_t)f.need);
            if (!buf) {
                conn_fail(c, "out of memory");
                return;
            }
            avail = f.need;
            st = ws_reader_next(&c->rd, buf, avail, &f);
        }
        if (st == WS_READ_NEED_MORE)
            return;
        if (st == WS_READ_FAIL) {
            conn_fail(c, "bad frame from the broker: %s (close code %u)", f.error ? f.error : "?",
                      (unsigned)f.close_code);
            return;
        }
        switch (f.opcode) {
        case WS_OP_PING: {
            uint8_t pong[WS_MAX_CONTROL_PAYLOAD];
            size_t n = (size_t)f.payload_len;
            memcpy(pong, f.payload, n);
            evbuffer_drain(in, f.frame_len);
            if (c->state != ST_CLOSING)
                send_small(c, WS_OP_PONG, pong, n);
            continue;
        }
        case WS_OP_PONG:
            evbuffer_drain(in, f.frame_len);
            continue;
        case WS_OP_CLOSE:
            if (c->state == ST_CLOSING) {
                conn_release(c);      /* close handshake complete */
            } else {
                conn_fail(c, "broker sent Close %u '%.*s'", (unsigned)f.peer_close_code,
                          (int)(f.close_reason_len > 100 ? 100 : f.close_reason_len),
                          f.close_reason ? (const char *)f.close_reason : "");
            }
            return;
        default:
            break;
        }
        if (c->state == ST_CLOSING) {
            evbuffer_drain(in, f.frame_len);
            continue;
        }
        if (f.message_opcode != WS_OP_BINARY && !cfg.target) {
            conn_fail(c, "text message from the broker (the protocol is binary)");
            return;
        }
        bool alive;
        if (f.message_begins && f.message_ends) {
            alive = handle_data(c, f.payload, (size_t)f.payload_len);
        } else {
            size_t need = c->frag_len + (size_t)f.payload_len;
            if (need > c->frag_cap) {
                size_t cap = c->frag_cap ? c->frag_cap : 4096;
                while (cap < need)
                    cap *= 2;
                uint8_t *grown = realloc(c->frag, cap);
                if (!grown) {
                    conn_fail(c, "out of memory");
                    return;
                }
                c->frag = grown;
                c->frag_cap = cap;
            }
            memcpy(c->frag + c->frag_len, f.payload, (size_t)f.payload_len);
            c->frag_len = need;
            alive = true;
            if (f.message_ends) {
                alive = handle_data(c, c->frag, c->frag_len);
                if (alive)
                    c->frag_len = 0;
            }
        }
        if (!alive)
            return;
        evbuffer_drain(in, f.frame_len);
    }
}

/* ------------------------------------------------------------------------ */
/* connection setup: TCP, TLS, upgrade                                       */

/* Checks the 101 (head ends with CRLFCRLF). false: c failed. */
static bool check_response(struct fanout_conn *c, const char *head, size_t len)
{
    size_t l0;
    const char *p;
    switch (bench_http_status_line(head, len, &l0, &p)) {
    case BENCH_HTTP_MALFORMED:
        return conn_fail(c, "malformed status line '%.*s'", (int)(l0 > 100 ? 100 : l0), head);
    case BENCH_HTTP_NOT_101:
        return conn_fail(c, "expected 101, got '%.*s'", (int)(l0 > 100 ? 100 : l0), head);
    case BENCH_HTTP_101:
        break;
    }
    bool upgrade = false, connection = false, accept = false, proto_ok = true;
    struct bench_http_header h;
    while (bench_http_next_header(&p, head + len, c->accept, &h)) {
        if (h.kind == BENCH_HDR_UPGRADE)
            upgrade = h.as_expected;
        else if (h.kind == BENCH_HDR_CONNECTION)
            connection = h.as_expected;
        else if (h.kind == BENCH_HDR_ACCEPT)
            accept = h.as_expected;
        else if (h.kind == BENCH_HDR_PROTOCOL)
            proto_ok = h.as_expected && !cfg.target;
    }
    if (!upgrade || !connection || !accept || !proto_ok)
        return conn_fail(c, "bad 101: %s", !upgrade ? "no 'Upgrade: websocket'"
                         : !connection ? "no 'Connection: Upgrade'"
                         : !accept ? "missing or wrong Sec-WebSocket-Accept"
                         : cfg.target ? "a Sec-WebSocket-Protocol, though none was offered"
                         : "a Sec-WebSocket-Protocol other than " BENCH_SUBPROTOCOL);
    return true;
}

static void send_request(struct fanout_conn *c)
{
    char key[32];
    const char *err = bench_ws_new_key(key, c->accept);
    if (err) {
        conn_fail(c, "%s", err);
        return;
    }
    c->state = ST_HTTP;
    bench_ws_write_request(bufferevent_get_output(c->bev),
                           c->role == ROLE_PUB ? &cfg.publish_ep : &cfg.ep, key,
                           cfg.target ? cfg.target->subprotocol : BENCH_SUBPROTOCOL,
                           SYNC_LOAD_PROGRAM);
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct fanout_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->state == ST_HTTP) {
        size_t hlen;
        const char *head = bench_http_response_head(in, &hlen);
        if (!head) {
            if (evbuffer_get_length(in) > MAX_RESPONSE_HEAD)
                conn_fail(c, "response head longer than %d bytes", MAX_RESPONSE_HEAD);
            return;
        }
        if (!check_response(c, head, hlen))
            return;
        evbuffer_drain(in, hlen);
        c->state = ST_WELCOME;
        if (cfg.target) {
            if (!cfg.target->on_upgraded(c, c->peer))
                return;
        } else {
            send_hello(c);
        }
        if (!c->live)
            return;
    }
    if (c->state >= ST_WELCOME)
        process_frames(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct fanout_conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {             /* TLS handshake done */
        send_request(c);
        return;
    }
    if (c->state == ST_CLOSING) {
        conn_release(c);
        return;
    }
    static const char *const st_name[] = {"tcp connect", "tls", "upgrade", "welcome",
                                          "subscribed/snapshot", "ready", "closing", "done"};
    const char *ph = cfg.target && c->state == ST_WELCOME ? "protocol setup" : st_name[c->state];
    if (what & BEV_EVENT_TIMEOUT) {
        conn_fail(c, "no progress for %d s during %s", HANDSHAKE_TIMEOUT_S, ph);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        conn_fail(c, "broker closed the connection (%s)", ph);
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    char tls_err[160];
    if (cfg.ep.tls && bench_take_tls_error(bev, tls_err, sizeof tls_err)) {
        conn_fail(c, "TLS error (%s): %s", ph, tls_err);
        return;
    }
    conn_fail(c, "connection error (%s): %s", ph, err ? strerror(err) : "unknown");
}

/* libevent 2.1 reads at most 4096 bytes per read callback (EVBUFFER_MAX_READ),
 * which at a few hundred MB/s is one ioctl + readv + epoll round per 4 KiB
 * and shows up as the tool's main kernel cost. So once a plain-TCP
 * subscriber is ready, its bufferevent stops reading and this event reads
 * READ_CHUNK bytes at a time straight into the bufferevent's input buffer;
 * the bufferevent still does all the writing. */
static void on_sock_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct fanout_conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer_iovec vec[2];
    /* a socket bufferevent keeps the end of its input frozen except while
     * it reads itself; do as it does */
    evbuffer_unfreeze(in, 0);
    int nv = evbuffer_reserve_space(in, READ_CHUNK, vec, 2);
    if (nv < 1) {
        evbuffer_freeze(in, 0);
        conn_fail(c, "out of memory");
        return;
    }
    ssize_t n = readv(fd, (struct iovec *)vec, nv);
    if (n <= 0) {
        int err = errno;
        evbuffer_commit_space(in, vec, 0);
        evbuffer_freeze(in, 0);
        if (n == 0) {
            if (c->state == ST_CLOSING)
                conn_release(c);
            else
                conn_fail(c, "broker closed the connection");
            return;
        }
        errno = err;
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        if (c->state == ST_CLOSING)
            conn_release(c);
        else
            conn_fail(c, "connection error: %s", strerror(errno));
        return;
    }
    size_t left = (size_t)n;
    for (int i = 0; i < nv; i++) {
        size_t take = vec[i].iov_len < left ? vec[i].iov_len : left;
        vec[i].iov_len = take;
        left -= take;
    }
    evbuffer_commit_space(in, vec, nv);
    evbuffer_freeze(in, 0);
    process_frames(c);
}

static void fast_read_start(struct fanout_conn *c)
{
    if (cfg.ep.tls || c->rev)
        return;
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    c->rev = event_new(c->w->base, fd, EV_READ | EV_PERSIST, on_sock_read, c);
    if (!c->rev)
        return;                       /* keep the bufferevent's reads */
    bufferevent_disable(c->bev, EV_READ);
    event_add(c->rev, NULL);
}

static void on_output_drained(struct bufferevent *bev, void *arg)
{
    (void)bev;
    pub_pump(arg);
}

static void on_tcp_connected(evutil_socket_t fd, short what, void *arg)
{
    struct fanout_conn *c = arg;
    event_free(c->cev);
    c->cev = NULL;
    if (what & EV_TIMEOUT) {
        conn_fail(c, "TCP connect took longer than %d s", HANDSHAKE_TIMEOUT_S);
        return;
    }
    int err = bench_connect_error(fd);
    if (err) {
        conn_fail(c, "connect to %s:%s: %s", cfg.ep.host, cfg.ep.port, strerror(err));
        return;
    }
    struct worker *w = c->w;
    const char *why;
    c->bev = bench_bufferevent_new(w->base, fd, cfg.ep.tls ? ssl_ctx : NULL, cfg.ep.sni, &why);
    if (!c->bev) {
        conn_fail(c, "%s", why);
        return;
    }
    if (cfg.ep.tls)
        c->state = ST_TLS;
    c->fd = -1;
    struct timeval tv = {HANDSHAKE_TIMEOUT_S, 0};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    /* publishers that get no answers send more once their output drained */
    bool pace_by_output = cfg.target && !cfg.target->acked && c->role == ROLE_PUB;
    bufferevent_setcb(c->bev, on_read, pace_by_output ? on_output_drained : NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (!cfg.ep.tls)
        send_request(c);
}

static bool launch(struct fanout_conn *c)
{
    struct worker *w = c->w;
    c->fd = -1;
    c->state = ST_TCP;
    c->live = true;
    ws_reader_init(&c->rd, WS_ROLE_CLIENT, MAX_MESSAGE);
    w->live++;
    w->handshaking++;
    const char *what;
    int fd = bench_connect_start(c->role == ROLE_PUB ? &publish_dest : &dest, &what);
    if (fd < 0)
        goto fail;
    c->fd = fd;
    what = "event_new";
    c->cev = event_new(w->base, fd, EV_WRITE, on_tcp_connected, c);
    if (!c->cev)
        goto fail;
    struct timeval tv = {HANDSHAKE_TIMEOUT_S, 0};
    event_add(c->cev, &tv);
    return true;
fail:;
    int err = errno;
    conn_fail(c, "%s: %s%s", what, strerror(err), err == EMFILE ? " (out of file descriptors)" : "");
    return false;
}

/* Starts connections until all are launched, RAMP_PER_THREAD at a time. */
static void refill(struct worker *w)
{
    if (w->closing)
        return;
    while (w->launched < w->nconns && w->handshaking < RAMP_PER_THREAD) {
        if (atomic_load_explicit(&w->failed[SYNC_LOAD_FAIL_SETUP], memory_order_relaxed))
            return;                   /* the run is off: the main thread will close */
        struct fanout_conn *c = &w->conns[w->launched++];
        if (!launch(c))
            return;
    }
}

/* ------------------------------------------------------------------------ */
/* the driver's side of fanout_target.h                                      */

const struct fanout_params *fanout_params(void)
{
    return &params;
}

enum fanout_role fanout_conn_role(const struct fanout_conn *c)
{
    return c->role == ROLE_SUB ? FANOUT_SUBSCRIBER : FANOUT_PUBLISHER;
}

long fanout_conn_index(const struct fanout_conn *c)
{
    return c->index;
}

void fanout_conn_client_id(const struct fanout_conn *c, char *out)
{
    snprintf(out, FANOUT_CLIENT_ID_MAX, SYNC_LOAD_PROGRAM "-%016" PRIx64 "-%c%ld", cfg.run_id,
             c->role == ROLE_SUB ? 's' : 'p', c->index);
}

void fanout_conn_send(struct fanout_conn *c, uint8_t opcode, uint8_t *buf, size_t hlen, size_t len)
{
    send_framed(c, opcode, buf, hlen, len);
}

size_t fanout_conn_unsent(const struct fanout_conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev));
}

bool fanout_conn_fail(struct fanout_conn *c, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return conn_fail(c, "%s", msg);
}

/* Setup is done. A subscriber that subscribed during setup (or any of a
 * peer target's, which receive from the 101 on) starts here. */
bool fanout_conn_ready(struct fanout_conn *c)
{
    struct worker *w = c->w;
    c->state = ST_READY;
    w->handshaking--;
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    if (c->role == ROLE_SUB) {
        if (cfg.target || c->awaiting_start)
            sub_mark_started(c);
        fast_read_start(c);
        atomic_fetch_add_explicit(&w->ready_subs, 1, memory_order_relaxed);
        refill(w);
        return c->live;
    }
    atomic_fetch_add_explicit(&w->ready_pubs, 1, memory_order_relaxed);
    refill(w);
    if (atomic_load_explicit(&phase, memory_order_relaxed) == SYNC_LOAD_RUN)
        pub_pump(c);
    return c->live;
}

bool fanout_pub_settled(struct fanout_conn *c, uint64_t request_id, bool accepted, const char *why,
                        uint64_t now)
{
    struct worker *w = c->w;
    struct slot *slot = find_slot(c->pub, request_id);
    if (!slot)
        return conn_fail(c, "an answer to unknown batch %" PRIu64, request_id);
    settle_slot(c, slot, now);
    atomic_fetch_add_explicit(&w->pushes_acked, 1, memory_order_relaxed);
    if (accepted) {
        atomic_fetch_add_explicit(&w->events_accepted, (uint64_t)cfg.batch, memory_order_relaxed);
    } else {
        w->n_rejected += (uint64_t)cfg.batch;
        atomic_fetch_add_explicit(&w->events_not_accepted, (uint64_t)cfg.batch,
                                  memory_order_relaxed);
        if (!w->first_reject[0])
            snprintf(w->first_reject, sizeof w->first_reject, "%s", why ? why : "(no reason)");
    }
    pub_pump(c);
    return c->live;
}

/* ------------------------------------------------------------------------ */
/* a connection, for the scenarios' hooks                                    */

long sync_conn_stream(const struct fanout_conn *c)
{
    return atomic_load_explicit(&c->stream, memory_order_relaxed);
}

uint64_t sync_conn_position(const struct fanout_conn *c)
{
    return c->seq.last;
}

uint64_t sync_conn_subscribe_ns(const struct fanout_conn *c)
{
    return c->subscribe_ns;
}

/* ------------------------------------------------------------------------ */
/* phases and commands, on the client threads                                */

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    for (long i = 0; i < w->nconns; i++)
        conn_release(&w->conns[i]);
    event_base_loopbreak(w->base);
}

static void start_publishers(struct worker *w)
{
    pthread_mutex_lock(&ctl_lock);
    struct sync_load_publish req = publish_req;
    pthread_mutex_unlock(&ctl_lock);
    for (long i = w->nsubs; i < w->nconns; i++) {
        struct fanout_conn *c = &w->conns[i];
        pub_apply(c, &req);
        if (c->pub->interval_ns) {
            /* spread the publishers' schedules over one interval */
            c->pub->next_due_ns = bench_mono_ns() +
                c->pub->interval_ns * (uint64_t)c->pub->index / (uint64_t)cfg.publishers;
        }
        pub_pump(c);
    }
}

static void close_connections(struct worker *w)
{
    w->closing = true;
    for (long i = 0; i < w->nconns; i++) {
        struct fanout_conn *c = &w->conns[i];
        if (!c->live || c->state == ST_CLOSING)
            continue;
        if (c->state >= ST_WELCOME && c->bev)
            close_politely(c);
        else
            conn_release(c);
    }
    if (w->live == 0) {
        event_base_loopbreak(w->base);
        return;
    }
    struct timeval tv = {STOP_GRACE_S, 0};
    evtimer_add(w->grace_ev, &tv);
}

static void on_phase(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    int ph = atomic_load(&phase);
    if (ph == SYNC_LOAD_RUN) {
        start_publishers(w);
    } else if (ph == SYNC_LOAD_STOP) {
        atomic_store(&w->stopped, true);
        for (long i = w->nsubs; i < w->nconns; i++)
            if (w->conns[i].pub && w->conns[i].pub->timer)
                evtimer_del(w->conns[i].pub->timer);
    } else if (ph == SYNC_LOAD_CLOSE) {
        close_connections(w);
    }
}

static void on_subscribe_command(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    pthread_mutex_lock(&ctl_lock);
    long stream = subscribe_req.stream;
    bool has_cursor = subscribe_req.has_cursor;
    struct sync_load_cursor cursor = subscribe_req.cursor;
    pthread_mutex_unlock(&ctl_lock);
    for (long k = 0; k < w->nsubs; k++) {
        struct fanout_conn *c = &w->conns[k];
        if (c->index < cfg.setup_subscribers || !c->live || c->state != ST_READY)
            continue;
        atomic_store_explicit(&c->stream, stream, memory_order_relaxed);
        atomic_store_explicit(&c->last_seq_shared, 0, memory_order_relaxed);
        send_subscribe(c, has_cursor ? &cursor : NULL);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    refill(w);
    event_base_dispatch(w->base);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* setting up                                                                */

static void conn_init(struct worker *w, struct fanout_conn *c, enum role role, long index)
{
    c->w = w;
    c->role = role;
    c->index = index;
    c->fd = -1;
    atomic_init(&c->stream, index % cfg.nstreams);
    if (role == ROLE_PUB) {
        static const struct sync_load_publish own_stream = {.stream = -1};
        c->pub = pub_new(c, index);
        pub_apply(c, &own_stream);
    } else if (cfg.target && !seq_table_init(&c->table, (size_t)cfg.publishers))
        bench_die(1, "out of memory");
    if (cfg.target && !(c->peer = cfg.target->conn_new(c)))
        bench_die(1, "out of memory");
}

/* Thread i's loop and its share of the connections, dealt round-robin:
 * subscribers i, i + threads, ..., then publishers likewise. */
static void worker_init(struct worker *w, int i)
{
    w->id = i;
    long ns = cfg.subscribers / cfg.threads + (i < cfg.subscribers % cfg.threads);
    long np = cfg.publishers / cfg.threads + (i < cfg.publishers % cfg.threads);
    w->nsubs = ns;
    w->nconns = ns + np;
    w->conns = calloc((size_t)(w->nconns ? w->nconns : 1), sizeof *w->conns);
    struct event_config *ecfg = event_config_new();
    if (!ecfg || !w->conns)
        bench_die(1, "out of memory");
    if (cfg.rate > 0)
        event_config_set_flag(ecfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    w->base = event_base_new_with_config(ecfg);
    event_config_free(ecfg);
    if (!w->base)
        bench_die(1, "event_base_new failed");
    w->phase_ev = event_new(w->base, -1, 0, on_phase, w);
    w->subscribe_ev = event_new(w->base, -1, 0, on_subscribe_command, w);
    w->grace_ev = evtimer_new(w->base, on_grace, w);
    if (!w->phase_ev || !w->subscribe_ev || !w->grace_ev)
        bench_die(1, "event_new failed");
    w->xs = bench_random_u64() | 1;
    w->arena.buf = malloc(ARENA_BYTES);
    w->arena.cap = ARENA_BYTES;
    if (!w->arena.buf)
        bench_die(1, "out of memory");
    w->alloc.alloc = arena_alloc;
    w->alloc.free = arena_free;
    w->alloc.allocator_data = &w->arena;
    hist_init(&w->lat);
    hist_init(&w->ack);
    for (long k = 0; k < ns; k++)
        conn_init(w, &w->conns[k], ROLE_SUB, i + k * cfg.threads);
    for (long k = 0; k < np; k++)
        conn_init(w, &w->conns[ns + k], ROLE_PUB, i + k * cfg.threads);
}

void sync_load_init(const struct sync_load_config *c)
{
    cfg = *c;
    if (!cfg.publish_ep.host[0])
        cfg.publish_ep = cfg.ep;
    /* Input chains come and go at a high rate: keep freed memory in the heap
     * instead of trimming it and faulting fresh pages back in. */
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    char what[96];
    snprintf(what, sizeof what, "%ld subscribers + %ld publishers", cfg.subscribers, cfg.publishers);
    bench_raise_nofile((unsigned long long)(cfg.subscribers + cfg.publishers), FD_MARGIN, what);
    bench_resolve(&cfg.ep, &dest);
    bench_resolve(&cfg.publish_ep, &publish_dest);
    params = (struct fanout_params){
        .collection = cfg.streams[0].collection,
        .subscribers = cfg.subscribers,
        .publishers = cfg.publishers,
        .batch = cfg.batch,
        .size = cfg.size,
        .run_id = cfg.run_id,
        .token = cfg.streams[0].token,
    };
    stream_max_seq = calloc((size_t)cfg.nstreams, sizeof *stream_max_seq);
    stream_heads = calloc((size_t)cfg.nstreams, sizeof *stream_heads);
    stream_head_known = calloc((size_t)cfg.nstreams, sizeof *stream_head_known);
    workers = calloc((size_t)cfg.threads, sizeof *workers);
    if (!stream_max_seq || !stream_heads || !stream_head_known || !workers)
        bench_die(1, "out of memory");
    if (evthread_use_pthreads() < 0)
        bench_die(1, "evthread_use_pthreads failed");
    if (cfg.ep.tls)
        ssl_ctx = bench_tls_client_ctx(1);
    bench_catch_signals();
    for (int i = 0; i < cfg.threads; i++)
        worker_init(&workers[i], i);
}

bool sync_load_spreads_sources(void)
{
    return dest.spread_src;
}

void sync_load_start(void)
{
    for (int i = 0; i < cfg.threads; i++)
        if (!bench_thread_start(&workers[i].thread, worker_main, &workers[i]))
            bench_die(1, "pthread_create failed");
}

/* ------------------------------------------------------------------------ */
/* driving the run, from the scenario's thread                               */

void sync_load_sum(struct sync_load_totals *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < cfg.threads; i++) {
        struct worker *w = &workers[i];
        t->ready_subs += atomic_load_explicit(&w->ready_subs, memory_order_relaxed);
        t->ready_pubs += atomic_load_explicit(&w->ready_pubs, memory_order_relaxed);
        t->started_subs += atomic_load_explicit(&w->started_subs, memory_order_relaxed);
        for (int k = 0; k < SYNC_LOAD_FAIL_KINDS; k++)
            t->failed[k] += atomic_load_explicit(&w->failed[k], memory_order_relaxed);
        t->delivered += atomic_load_explicit(&w->delivered, memory_order_relaxed);
        t->lost += atomic_load_explicit(&w->lost, memory_order_relaxed);
        t->dup += atomic_load_explicit(&w->dup, memory_order_relaxed);
        t->pushes_sent += atomic_load_explicit(&w->pushes_sent, memory_order_relaxed);
        t->pushes_acked += atomic_load_explicit(&w->pushes_acked, memory_order_relaxed);
        t->accepted += atomic_load_explicit(&w->events_accepted, memory_order_relaxed);
        t->not_accepted += atomic_load_explicit(&w->events_not_accepted, memory_order_relaxed);
        t->inflight += atomic_load_explicit(&w->inflight, memory_order_relaxed);
        t->slips += atomic_load_explicit(&w->sched_slips, memory_order_relaxed);
        t->stopped += atomic_load(&w->stopped);
    }
}

const char *sync_load_first_error(enum sync_load_fail kind)
{
    for (int i = 0; i < cfg.threads; i++)
        if (workers[i].first_err[kind][0])
            return workers[i].first_err[kind];
    return "";
}

bool sync_load_wait_setup(uint64_t t0, char *why, size_t cap)
{
    struct sync_load_totals t;
    uint64_t deadline = t0 + (uint64_t)SYNC_LOAD_SETUP_TIMEOUT_S * 1000000000u;
    uint64_t next_tick = t0 + 1000000000u;
    for (;;) {
        sync_load_sum(&t);
        if (t.ready_subs == cfg.subscribers && t.ready_pubs == cfg.publishers)
            return true;
        if (t.failed[SYNC_LOAD_FAIL_SETUP]) {
            snprintf(why, cap, "%ld connection(s) failed during setup; first: %s",
                     t.failed[SYNC_LOAD_FAIL_SETUP], sync_load_first_error(SYNC_LOAD_FAIL_SETUP));
            return false;
        }
        if (bench_got_signal) {
            snprintf(why, cap, "interrupted during setup");
            return false;
        }
        if (bench_mono_ns() >= deadline) {
            snprintf(why, cap, "setup not done within %d s (%ld/%ld subscribers, %ld/%ld "
                     "publishers ready)", SYNC_LOAD_SETUP_TIMEOUT_S, t.ready_subs, cfg.subscribers,
                     t.ready_pubs, cfg.publishers);
            return false;
        }
        bench_sleep_until_ns(bench_mono_ns() + 20000000u);
        if (bench_mono_ns() >= next_tick) {
            fprintf(stderr, "[%6.1fs] setup   subscribers ready %ld/%ld, publishers ready %ld/%ld\n",
                    (double)(bench_mono_ns() - t0) / 1e9, t.ready_subs, cfg.subscribers, t.ready_pubs,
                    cfg.publishers);
            next_tick += 1000000000u;
        }
    }
}

void sync_load_set_phase(enum sync_load_phase ph)
{
    atomic_store(&phase, ph);
    for (int i = 0; i < cfg.threads; i++)
        event_active(workers[i].phase_ev, EV_READ, 0);
}

void sync_load_set_window(uint64_t start_ns, uint64_t end_ns)
{
    atomic_store(&window_start_ns, start_ns);
    atomic_store(&window_end_ns, end_ns);
}

void sync_load_set_publish(const struct sync_load_publish *p)
{
    pthread_mutex_lock(&ctl_lock);
    publish_req = *p;
    pthread_mutex_unlock(&ctl_lock);
}

void sync_load_subscribe(long stream, const struct sync_load_cursor *cursor)
{
    pthread_mutex_lock(&ctl_lock);
    subscribe_req.stream = stream;
    subscribe_req.has_cursor = cursor != NULL;
    if (cursor)
        subscribe_req.cursor = *cursor;
    pthread_mutex_unlock(&ctl_lock);
    for (int i = 0; i < cfg.threads; i++)
        event_active(workers[i].subscribe_ev, EV_READ, 0);
}

bool sync_load_stream_head(long stream, struct sync_load_cursor *out)
{
    pthread_mutex_lock(&ctl_lock);
    bool known = stream_head_known[stream];
    if (known)
        *out = stream_heads[stream];
    pthread_mutex_unlock(&ctl_lock);
    return known;
}

void sync_load_sample(struct sync_load_sample *s, pid_t broker_pid)
{
    s->t = bench_mono_ns();
    sync_load_sum(&s->tot);
    s->broker_cpu = broker_pid ? bench_proc_cpu_s(broker_pid) : -1;
    s->self_cpu = bench_self_cpu_s();
    s->host = bench_host_cpu_read();
}

/* Where every subscriber's position must get to once nothing is in flight:
 * the highest accepted seq of its stream on nebula-syncd; for the peer
 * targets, whose positions add up each publisher's counter, every event
 * published. */
uint64_t sync_load_stream_target(long stream, const struct sync_load_totals *t)
{
    return cfg.target ? t->accepted : atomic_load_explicit(&stream_max_seq[stream], memory_order_relaxed);
}

uint64_t sync_load_highest_target(const struct sync_load_totals *t)
{
    uint64_t highest = 0;
    for (long s = 0; s < cfg.nstreams; s++) {
        uint64_t target = sync_load_stream_target(s, t);
        if (target > highest)
            highest = target;
    }
    return highest;
}

long sync_load_subs_behind(const struct sync_load_totals *t, uint64_t *missing)
{
    long n = 0;
    uint64_t miss = 0;
    for (int i = 0; i < cfg.threads; i++) {
        struct worker *w = &workers[i];
        for (long k = 0; k < w->nsubs; k++) {
            const struct fanout_conn *c = &w->conns[k];
            uint64_t target = sync_load_stream_target(sync_conn_stream(c), t);
            uint64_t pos = atomic_load_explicit(&c->last_seq_shared, memory_order_relaxed);
            if (pos < target) {
                n++;
                miss += target - pos;
            }
        }
    }
    if (missing)
        *missing = miss;
    return n;
}

void sync_load_close(void)
{
    sync_load_set_phase(SYNC_LOAD_CLOSE);
    for (int i = 0; i < cfg.threads; i++)
        pthread_join(workers[i].thread, NULL);
}

/* ------------------------------------------------------------------------ */
/* after the run                                                             */

/* How many events each publisher sent. */
static uint64_t *published_per_publisher(void)
{
    uint64_t *n = calloc((size_t)cfg.publishers, sizeof *n);
    if (!n)
        bench_die(1, "out of memory");
    for (int i = 0; i < cfg.threads; i++)
        for (long k = workers[i].nsubs; k < workers[i].nconns; k++)
            n[workers[i].conns[k].index] = workers[i].conns[k].pub->counter;
    return n;
}

/* One subscriber's checks, added to out; its tail counted against its
 * stream's target when tail is true. */
static void tally_subscriber(const struct fanout_conn *c, const uint64_t *issued,
                             const struct sync_load_totals *t, bool tail, struct sync_load_tally *out)
{
    out->skipped += c->skipped;
    out->foreign += c->foreign;
    out->resnapshots += c->resnapshots;
    if (cfg.target) {
        out->gaps += seq_table_lost(&c->table);
        out->dups += seq_table_dup(&c->table);
        if (tail && c->started)
            out->tail_lost += seq_table_missing(&c->table, issued);
        return;
    }
    out->gaps += c->seq.lost;
    out->dups += c->seq.dup;
    uint64_t target = tail ? sync_load_stream_target(sync_conn_stream(c), t) : 0;
    if (c->started && c->seq.last < target)
        out->tail_lost += target - c->seq.last;
}

void sync_load_tally(struct sync_load_tally *out, bool count_tail)
{
    memset(out, 0, sizeof *out);
    hist_init(&out->lat);
    hist_init(&out->ack);
    struct sync_load_totals t;
    sync_load_sum(&t);
    uint64_t *issued = cfg.target ? published_per_publisher() : NULL;
    for (int i = 0; i < cfg.threads; i++) {
        struct worker *w = &workers[i];
        hist_merge(&out->lat, &w->lat);
        hist_merge(&out->ack, &w->ack);
        out->n_duplicate += w->n_duplicate;
        out->n_conflict += w->n_conflict;
        out->n_rejected += w->n_rejected;
        if (!out->first_reject[0] && w->first_reject[0])
            snprintf(out->first_reject, sizeof out->first_reject, "%s", w->first_reject);
        for (long k = 0; k < w->nsubs; k++)
            tally_subscriber(&w->conns[k], issued, &t, count_tail, out);
    }
    free(issued);
    out->lost = out->gaps + out->skipped + out->tail_lost;
    if (count_tail)
        out->last_seq = sync_load_highest_target(&t);
}

void sync_load_free(void)
{
    for (int i = 0; i < cfg.threads; i++) {
        struct worker *w = &workers[i];
        for (long k = 0; k < w->nconns; k++) {
            pub_free(w->conns[k].pub);
            seq_table_free(&w->conns[k].table);
            if (cfg.target)
                cfg.target->conn_free(w->conns[k].peer);
        }
        event_free(w->phase_ev);
        event_free(w->subscribe_ev);
        event_free(w->grace_ev);
        event_base_free(w->base);
        arena_reset(&w->arena);
        free(w->arena.buf);
        free(w->arena.big);
        free(w->conns);
    }
    free(workers);
    free(stream_max_seq);
    free(stream_heads);
    free(stream_head_known);
    SSL_CTX_free(ssl_ctx);
}
