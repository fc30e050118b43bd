/* handshake_load: see handshake_load.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "handshake_load.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "bench_common.h"
#include "nebula_sync.pb-c.h"
#include "sync_messages.h"
#include "ws_frame.h"
#include "ws_handshake.h"

#define SUBPROTOCOL BENCH_SUBPROTOCOL
#define FD_MARGIN 100                 /* fds kept free for stdio, epoll, listeners... */
#define MAX_RESPONSE_HEAD 8192        /* bytes of HTTP response head we accept */
#define MAX_MESSAGE (1u << 20)        /* largest server message we accept */
#define CLOSE_WAIT_S 2                /* wait this long for the broker's Close/EOF */
#define STOP_GRACE_S 3                /* a stopping thread frees what is left after this */
#define DEFAULT_COLLECTION "nebula-sync-bench"

/* ------------------------------------------------------------------------ */
/* options                                                                  */

enum mode { MODE_CONNECT, MODE_IDLE };

struct options {
    enum mode mode;
    const char *url;
    struct bench_endpoint ep;       /* the URL, parsed */
    long connections;
    double duration;
    double hold;
    long ramp;                      /* idle mode: handshakes in flight at once */
    double timeout;                 /* per handshake */
    pid_t broker_pid;
    int threads;
    const char *json_path;
    const char *token;
    const char *collection;         /* idle: subscribe every connection to it; NULL: no */
};

static const struct handshake_tool *tool;
static struct options opt;

/* One option's help: its text for connect, for idle (NULL: not in that
 * mode), prefixed "connect: " / "idle: " when the tool runs both. */
static void describe_option(FILE *f, bool connect, bool idle, const char *flag,
                            const char *for_connect, const char *for_idle)
{
    bool both = connect && idle && for_connect && for_idle;
    if (both)
        fprintf(f, "  %-20s connect: %s;\n  %-20s idle: %s\n", flag, for_connect, "", for_idle);
    else if (connect && for_connect)
        fprintf(f, "  %-20s %s\n", flag, for_connect);
    else if (idle && for_idle)
        fprintf(f, "  %-20s %s%s\n", flag, connect ? "idle: " : "", for_idle);
}

/* The options this tool takes, one per line. */
static void usage_options(const struct handshake_tool *t, FILE *f)
{
    bool idle = !t->scenario || strcmp(t->scenario, "idle") == 0;
    bool connect = !t->scenario || strcmp(t->scenario, "connect") == 0;
    if (t->default_url)
        fprintf(f, "  --url URL            ws[s]://HOST:PORT/PATH\n"
                   "                       (default %s)\n", t->default_url);
    else
        fprintf(f, "  --url URL            ws[s]://HOST:PORT/PATH (required)\n");
    if (!t->scenario)
        fprintf(f, "  --mode MODE          connect (default) or idle\n");
    describe_option(f, connect, idle, "--connections N", "connections kept in flight (default 64)",
                    "connections opened and held (default 1000)");
    describe_option(f, connect, idle, "--duration S", "how long to run (default 10)",
                    "time limit for opening the connections (default 10)");
    describe_option(f, connect, idle, "--hold S", NULL,
                    "seconds held idle before reading RSS (default 5)");
    describe_option(f, connect, idle, "--ramp N", NULL,
                    "handshakes in flight while opening (default 256)");
    if (t->subscribe)
        fprintf(f, "  --collection NAME    the collection every connection subscribes to\n"
                   "                       (default " DEFAULT_COLLECTION ")\n");
    fprintf(f,
        "  --timeout S          per-handshake time limit (default 10)\n"
        "  --broker-pid PID     read the broker's VmRSS and CPU time from /proc/PID\n"
        "  --threads N          client threads, one event loop each (default 1)\n"
        "  --token T            put T in Hello.auth_token (for brokers that require one)\n"
        "  --json FILE          also write the result as JSON to FILE\n"
        "  -h, --help           this text\n");
}

static void usage(FILE *f)
{
    fprintf(f, "usage: %s%s%s %s\n\n%s\n", tool->program, tool->scenario ? " " : "",
            tool->scenario ? tool->scenario : "", tool->synopsis, tool->about);
    usage_options(tool, f);
    fprintf(f, "\n%s", tool->notes);
}

static double parse_seconds(const char *name, const char *s, double min)
{
    double v;
    if (!bench_scan_double(s, min, 86400.0, &v))
        bench_die_usage("%s: '%s' is not a number of seconds >= %g", name, s, min);
    return v;
}

static enum mode parse_mode(const char *s)
{
    if (strcmp(s, "connect") == 0)
        return MODE_CONNECT;
    if (strcmp(s, "idle") == 0)
        return MODE_IDLE;
    bench_die_usage("--mode: '%s' is neither connect nor idle", s);
}

enum { O_URL = 256, O_MODE, O_CONN, O_DUR, O_HOLD, O_RAMP, O_TIMEOUT, O_PID, O_THREADS, O_JSON,
       O_TOKEN, O_COLL };

/* The options this tool takes: --mode only when it is not fixed, the idle
 * ones only where idle can run, --collection only where idle subscribes. */
static void tool_options(struct option *out)
{
    static const struct option all[] = {
        {"url", required_argument, NULL, O_URL},
        {"mode", required_argument, NULL, O_MODE},
        {"connections", required_argument, NULL, O_CONN},
        {"duration", required_argument, NULL, O_DUR},
        {"hold", required_argument, NULL, O_HOLD},
        {"ramp", required_argument, NULL, O_RAMP},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"broker-pid", required_argument, NULL, O_PID},
        {"threads", required_argument, NULL, O_THREADS},
        {"json", required_argument, NULL, O_JSON},
        {"token", required_argument, NULL, O_TOKEN},
        {"collection", required_argument, NULL, O_COLL},
        {"help", no_argument, NULL, 'h'},
    };
    bool idle = !tool->scenario || opt.mode == MODE_IDLE;
    size_t n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        int v = all[i].val;
        if ((v == O_MODE && tool->scenario) || ((v == O_HOLD || v == O_RAMP) && !idle) ||
            (v == O_COLL && !tool->subscribe))
            continue;
        out[n++] = all[i];
    }
    out[n] = (struct option){NULL, 0, NULL, 0};
}

static void parse_option(int c, char **argv)
{
    switch (c) {
    case O_URL: opt.url = optarg; break;
    case O_MODE: opt.mode = parse_mode(optarg); break;
    case O_CONN: opt.connections = bench_option_long("--connections", optarg, 1, 10000000); break;
    case O_DUR: opt.duration = parse_seconds("--duration", optarg, 0.1); break;
    case O_HOLD: opt.hold = parse_seconds("--hold", optarg, 0.0); break;
    case O_RAMP: opt.ramp = bench_option_long("--ramp", optarg, 1, 1000000); break;
    case O_TIMEOUT: opt.timeout = parse_seconds("--timeout", optarg, 0.1); break;
    case O_PID: opt.broker_pid = (pid_t)bench_option_long("--broker-pid", optarg, 1, INT_MAX); break;
    case O_THREADS: opt.threads = (int)bench_option_long("--threads", optarg, 1, 256); break;
    case O_JSON: opt.json_path = optarg; break;
    case O_TOKEN: opt.token = bench_option_token(optarg); break;
    case O_COLL: opt.collection = bench_option_collection(optarg); break;
    case 'h': usage(stdout); exit(0);
    case '?':
    default:
        if (optopt > 0 && optopt < 256)
            bench_die_usage("option -%c is unknown or needs a value", optopt);
        bench_die_usage("option '%s' is unknown or needs a value", argv[optind - 1]);
    }
}

static void parse_args(int argc, char **argv)
{
    opt = (struct options){
        .mode = tool->scenario && strcmp(tool->scenario, "idle") == 0 ? MODE_IDLE : MODE_CONNECT,
        .url = tool->default_url,
        .connections = 0,           /* 0: mode default */
        .duration = 10.0,
        .hold = 5.0,
        .ramp = 256,
        .timeout = 10.0,
        .threads = 1,
        .collection = tool->subscribe ? DEFAULT_COLLECTION : NULL,
    };
    struct option longopts[16];
    tool_options(longopts);
    bench_getopt(argc, argv, longopts, parse_option);
    if (!opt.url)
        bench_die_usage("--url is required");
    bench_parse_url(opt.url, "/v1/sync", &opt.ep);
    if (opt.connections == 0)
        opt.connections = opt.mode == MODE_CONNECT ? 64 : 1000;
    if (opt.threads > opt.connections)
        opt.threads = (int)opt.connections;
    if (opt.mode != MODE_IDLE)
        opt.collection = NULL;
}

/* ------------------------------------------------------------------------ */
/* shared state                                                              */

enum fail_kind {
    F_CONNECT,      /* socket/bind/TCP connect failed */
    F_TIMEOUT,      /* no progress within --timeout */
    F_TLS,          /* TLS handshake failed */
    F_HTTP,         /* no "101", or a malformed response */
    F_UPGRADE,      /* 101 with a wrong accept key / Upgrade / Connection / subprotocol */
    F_FRAME,        /* server frame violating RFC 6455, or not a binary message */
    F_SERVER_ERROR, /* a ServerMessage.error (or anything but welcome) instead of Welcome */
    F_CLOSED,       /* broker closed / reset before the Welcome */
    F_SUBSCRIBE,    /* idle with --collection: the subscription was refused or went wrong */
    F_COUNT
};

static const char *const fail_names[F_COUNT] = {
    "tcp connect", "timeout", "tls handshake", "http response", "upgrade headers",
    "websocket frame", "not a welcome", "closed by broker", "subscription",
};

static struct bench_dest dest;          /* the broker; sources 127.0.X.Y if loopback */
static SSL_CTX *ssl_ctx;
static atomic_bool ramp_over;           /* idle mode: stop opening new connections */

static pthread_mutex_t tls_info_lock = PTHREAD_MUTEX_INITIALIZER;
static char tls_info[256];              /* negotiated version/cipher/key of the first connection */

enum cstate { ST_TCP, ST_TLS, ST_HTTP, ST_WELCOME, ST_SUBSCRIBING, ST_IDLE, ST_CLOSING };

struct worker;

/* One connection; owned by its worker's thread. */
struct conn {
    struct worker *w;
    struct conn *prev, *next;
    int fd;                           /* until the bufferevent owns it */
    struct event *cev;                /* TCP connect wait */
    struct bufferevent *bev;
    enum cstate state;
    uint64_t t0, t_tcp, t_tls, t_req;
    ws_reader rd;
    char accept[WS_ACCEPT_KEY_LEN + 1];
};

struct worker {
    int id;
    pthread_t thread;
    struct event_base *base;
    struct event *stop_ev;
    struct event *retry_ev;
    struct event *grace_ev;
    struct conn *head;
    long target;                      /* connect: concurrency; idle: connections to open */
    long launched;
    long live;                        /* struct conns alive */
    long handshaking;                 /* live and not yet welcomed (or subscribed) */
    uint64_t seq;
    bool stopping;

    /* read by the main thread while running */
    atomic_long ok;                   /* Welcomes received */
    atomic_long failed;
    atomic_long inflight;             /* == handshaking */
    atomic_long open_idle;            /* idle mode: established (and subscribed) and idle */
    atomic_long dropped;              /* idle mode: closed by the broker while idle */
    atomic_long fail_by[F_COUNT];

    /* read by the main thread after join */
    long close_timeouts;
    long aborted;                     /* in flight when the run stopped */
    char first_err[F_COUNT][200];
    uint32_t *lat;                    /* full handshake latencies, us */
    size_t nlat, caplat;
    uint64_t sum_tcp, sum_tls, sum_upgrade, sum_welcome, sum_subscribe;
};

static struct worker *workers;

/* ------------------------------------------------------------------------ */
/* connections                                                               */

static void refill(struct worker *w);

static void list_add(struct worker *w, struct conn *c)
{
    c->prev = NULL;
    c->next = w->head;
    if (w->head)
        w->head->prev = c;
    w->head = c;
}

static void list_del(struct worker *w, struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        w->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
}

static bool handshaking(const struct conn *c)
{
    return c->state <= ST_SUBSCRIBING;
}

/* c is no longer handshaking (idle, closing or gone). */
static void handshake_over(struct conn *c)
{
    c->w->handshaking--;
    atomic_store_explicit(&c->w->inflight, c->w->handshaking, memory_order_relaxed);
}

/* Frees everything of c; starts replacements unless stopping. */
static void conn_free(struct conn *c)
{
    struct worker *w = c->w;
    if (handshaking(c))
        handshake_over(c);
    if (c->state == ST_IDLE)
        atomic_fetch_sub_explicit(&w->open_idle, 1, memory_order_relaxed);
    if (c->cev)
        event_free(c->cev);
    if (c->bev)
        bufferevent_free(c->bev);            /* closes the fd (and frees the SSL) */
    else if (c->fd >= 0)
        close(c->fd);
    list_del(w, c);
    free(c);
    w->live--;
    if (w->stopping) {
        if (w->live == 0)
            event_base_loopbreak(w->base);
        return;
    }
    refill(w);
}

static void conn_fail(struct conn *c, enum fail_kind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void conn_fail(struct conn *c, enum fail_kind kind, const char *fmt, ...)
{
    struct worker *w = c->w;
    if (w->stopping) {                       /* not the broker's fault: we cut it */
        w->aborted++;
        conn_free(c);
        return;
    }
    if (atomic_fetch_add_explicit(&w->fail_by[kind], 1, memory_order_relaxed) == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(w->first_err[kind], sizeof w->first_err[kind], fmt, ap);
        va_end(ap);
    }
    atomic_fetch_add_explicit(&w->failed, 1, memory_order_relaxed);
    conn_free(c);
}

/* The broker closed an idle connection, or one we were closing is done. */
static void conn_ended(struct conn *c)
{
    if (c->state == ST_IDLE)
        atomic_fetch_add_explicit(&c->w->dropped, 1, memory_order_relaxed);
    conn_free(c);
}

static void record_latency(struct worker *w, uint64_t us)
{
    if (w->nlat == w->caplat) {
        size_t cap = w->caplat ? w->caplat * 2 : 4096;
        uint32_t *grown = realloc(w->lat, cap * sizeof *grown);
        if (!grown)
            return;                          /* keep going; just fewer samples */
        w->lat = grown;
        w->caplat = cap;
    }
    w->lat[w->nlat++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

/* One masked client control frame (client-to-server frames must be masked,
 * RFC 6455 5.3). */
static void send_control(struct conn *c, uint8_t opcode, const uint8_t *payload, size_t len)
{
    uint8_t frame[WS_MAX_HEADER_LEN + WS_MAX_CONTROL_PAYLOAD];
    uint8_t mask[4];
    if (len > WS_MAX_CONTROL_PAYLOAD)
        return;
    RAND_bytes(mask, sizeof mask);
    size_t h = bench_ws_header_len(len);
    memcpy(frame + h, payload, len);
    bench_ws_send_masked(c->bev, opcode, frame, h, len, mask);
}

/* false: c failed (and is freed). */
static bool send_hello(struct conn *c)
{
    char id[96];
    uint8_t mask[4];
    snprintf(id, sizeof id, "%s-%d-%" PRIu64, tool->program, c->w->id, c->w->seq++);
    RAND_bytes(mask, sizeof mask);
    if (sync_msg_send_hello(c->bev, mask, id, opt.token, tool->program))
        return true;
    conn_fail(c, F_CONNECT, "out of memory");
    return false;
}

/* false: c failed (and is freed). */
static bool send_subscribe(struct conn *c)
{
    uint8_t mask[4];
    RAND_bytes(mask, sizeof mask);
    if (sync_msg_send_subscribe(c->bev, mask, opt.collection, NULL))
        return true;
    conn_fail(c, F_SUBSCRIBE, "out of memory");
    return false;
}

static void send_request(struct conn *c)
{
    char key[32];
    const char *err = bench_ws_new_key(key, c->accept);
    if (err) {
        conn_fail(c, F_HTTP, "%s", err);
        return;
    }
    c->t_req = bench_mono_us();
    c->state = ST_HTTP;
    bench_ws_write_request(bufferevent_get_output(c->bev), &opt.ep, key, BENCH_SUBPROTOCOL,
                           tool->program);
}

static void close_politely(struct conn *c)
{
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
    size_t n = ws_close_payload_write(payload, WS_CLOSE_NORMAL, "bench done");
    if (handshaking(c))
        handshake_over(c);
    if (c->state == ST_IDLE)
        atomic_fetch_sub_explicit(&c->w->open_idle, 1, memory_order_relaxed);
    c->state = ST_CLOSING;
    send_control(c, WS_OP_CLOSE, payload, n);
    struct timeval tv = {CLOSE_WAIT_S, 0};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
}

/* Set up (and subscribed, with --collection): idle from now on. */
static void go_idle(struct conn *c)
{
    struct worker *w = c->w;
    handshake_over(c);
    c->state = ST_IDLE;
    atomic_fetch_add_explicit(&w->open_idle, 1, memory_order_relaxed);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    refill(w);
}

/* false: c failed (and is freed). */
static bool on_welcome(struct conn *c)
{
    struct worker *w = c->w;
    uint64_t t = bench_mono_us();
    record_latency(w, t - c->t0);
    w->sum_tcp += c->t_tcp - c->t0;
    w->sum_tls += c->t_tls - c->t_tcp;
    w->sum_welcome += t - c->t_req;   /* t_req was reset at the Hello */
    atomic_fetch_add_explicit(&w->ok, 1, memory_order_relaxed);
    if (opt.mode == MODE_CONNECT) {
        close_politely(c);
        return true;
    }
    if (opt.collection) {
        c->t_req = t;
        c->state = ST_SUBSCRIBING;
        return send_subscribe(c);
    }
    go_idle(c);
    return true;
}

/* Checks the response head (ends with CRLFCRLF). Returns false after failing c. */
static bool check_response(struct conn *c, const char *head, size_t len)
{
    size_t l0;
    const char *p;
    switch (bench_http_status_line(head, len, &l0, &p)) {
    case BENCH_HTTP_MALFORMED:
        conn_fail(c, F_HTTP, "malformed status line: '%.*s'", (int)(l0 > 100 ? 100 : l0), head);
        return false;
    case BENCH_HTTP_NOT_101:
        conn_fail(c, F_HTTP, "expected 101, got '%.*s'", (int)(l0 > 100 ? 100 : l0), head);
        return false;
    case BENCH_HTTP_101:
        break;
    }
    bool upgrade = false, connection = false, accept = false, proto = false;
    struct bench_http_header h;
    while (bench_http_next_header(&p, head + len, c->accept, &h)) {
        int vl = (int)(h.value_len > 60 ? 60 : h.value_len);
        switch (h.kind) {
        case BENCH_HDR_UPGRADE: upgrade = h.as_expected; break;
        case BENCH_HDR_CONNECTION: connection = h.as_expected; break;
        case BENCH_HDR_ACCEPT:
            if (!h.as_expected) {
                conn_fail(c, F_UPGRADE, "Sec-WebSocket-Accept '%.*s', expected '%s'", vl, h.value,
                          c->accept);
                return false;
            }
            accept = true;
            break;
        case BENCH_HDR_PROTOCOL:
            proto = h.as_expected;
            if (!proto) {
                conn_fail(c, F_UPGRADE, "Sec-WebSocket-Protocol '%.*s', expected " SUBPROTOCOL, vl,
                          h.value);
                return false;
            }
            break;
        case BENCH_HDR_OTHER:
            break;
        }
    }
    if (!upgrade || !connection || !accept || !proto) {
        conn_fail(c, F_UPGRADE, "101 without %s", !upgrade ? "'Upgrade: websocket'"
                  : !connection ? "'Connection: Upgrade'"
                  : !accept ? "Sec-WebSocket-Accept" : "Sec-WebSocket-Protocol: " SUBPROTOCOL);
        return false;
    }
    return true;
}

/* "ServerMessage.error code N 'text'" or what else came, for error lines. */
static void describe_unexpected(const Nebula__Sync__V1__ServerMessage *m, const char *expected,
                                char *out, size_t cap)
{
    if (m->message_case == NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_ERROR)
        snprintf(out, cap, "ServerMessage.error code %d '%.100s'", (int)m->error->code,
                 m->error->message ? m->error->message : "");
    else
        snprintf(out, cap, "ServerMessage case %d, not %s", (int)m->message_case, expected);
}

/* The answer to the Hello: a Welcome, or the connection fails. false: c
 * failed (and is freed). */
static bool on_welcome_message(struct conn *c, const Nebula__Sync__V1__ServerMessage *m)
{
    if (m->message_case != NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_WELCOME) {
        char why[200];
        describe_unexpected(m, "a welcome", why, sizeof why);
        conn_fail(c, F_SERVER_ERROR, "%s", why);
        return false;
    }
    return on_welcome(c);
}

/* While subscribing: Subscribed (a snapshot, as no cursor was sent), then
 * Snapshot pages; the last one makes the connection idle. false: c failed
 * (and is freed). */
static bool on_subscribe_message(struct conn *c, const Nebula__Sync__V1__ServerMessage *m)
{
    char why[200];
    switch (m->message_case) {
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SUBSCRIBED:
        if (m->subscribed->mode == NEBULA__SYNC__V1__SUBSCRIBE_MODE__SUBSCRIBE_MODE_SNAPSHOT)
            return true;
        conn_fail(c, F_SUBSCRIBE, "Subscribed in mode %d, expected SNAPSHOT", (int)m->subscribed->mode);
        return false;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_SNAPSHOT:
        if (m->snapshot->last) {
            c->w->sum_subscribe += bench_mono_us() - c->t_req;
            go_idle(c);
        }
        return true;
    case NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_EVENTS:
        return true;                  /* someone writes to the collection: fine */
    default:
        describe_unexpected(m, "Subscribed or Snapshot", why, sizeof why);
        conn_fail(c, F_SUBSCRIBE, "%s", why);
        return false;
    }
}

/* A binary message while handshaking or subscribing. false: c is gone. */
static bool on_setup_message(struct conn *c, const ws_frame *f)
{
    if (!f->message_begins || !f->message_ends || f->message_opcode != WS_OP_BINARY) {
        conn_fail(c, F_FRAME, "expected one binary ServerMessage, got opcode %u (%" PRIu64 " bytes)",
                  (unsigned)f->opcode, f->payload_len);
        return false;
    }
    Nebula__Sync__V1__ServerMessage *m =
        nebula__sync__v1__server_message__unpack(NULL, (size_t)f->payload_len, f->payload);
    if (!m) {
        conn_fail(c, c->state == ST_WELCOME ? F_SERVER_ERROR : F_SUBSCRIBE,
                  "undecodable ServerMessage (%" PRIu64 " bytes)", f->payload_len);
        return false;
    }
    bool alive = c->state == ST_WELCOME ? on_welcome_message(c, m) : on_subscribe_message(c, m);
    nebula__sync__v1__server_message__free_unpacked(m, NULL);
    return alive;
}

static void process_frames(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    for (;;) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        uint8_t *buf = evbuffer_pullup(in, -1);
        ws_frame f;
        ws_read_status st = ws_reader_next(&c->rd, buf, len, &f);
        if (st == WS_READ_NEED_MORE)
            return;
        if (st == WS_READ_FAIL) {
            if (c->state == ST_IDLE || c->state == ST_CLOSING)
                conn_ended(c);
            else
                conn_fail(c, F_FRAME, "bad frame from broker: %s (close code %u)",
                          f.error ? f.error : "?", (unsigned)f.close_code);
            return;
        }
        switch (f.opcode) {
        case WS_OP_PING: {
            uint8_t pong[WS_MAX_CONTROL_PAYLOAD];
            size_t n = f.payload_len;
            memcpy(pong, f.payload, n);
            evbuffer_drain(in, f.frame_len);
            if (c->state != ST_CLOSING)
                send_control(c, WS_OP_PONG, pong, n);
            continue;
        }
        case WS_OP_PONG:
            evbuffer_drain(in, f.frame_len);
            continue;
        case WS_OP_CLOSE:
            if (c->state == ST_CLOSING || c->state == ST_IDLE)
                conn_ended(c);                /* a close handshake complete, or dropped */
            else
                conn_fail(c, F_CLOSED, "broker sent Close %u '%.*s' instead of %s",
                          (unsigned)f.peer_close_code,
                          (int)(f.close_reason_len > 100 ? 100 : f.close_reason_len),
                          f.close_reason ? (const char *)f.close_reason : "",
                          c->state == ST_SUBSCRIBING ? "a snapshot" : "Welcome");
            return;
        default:
            break;
        }
        /* a data frame */
        if (handshaking(c) && c->state >= ST_WELCOME) {
            bool alive = on_setup_message(c, &f);
            if (!alive)
                return;
            evbuffer_drain(in, f.frame_len);
            continue;
        }
        /* idle or closing: anything else from the broker is ignored */
        evbuffer_drain(in, f.frame_len);
    }
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (c->state == ST_HTTP) {
        size_t hlen;
        const char *head = bench_http_response_head(in, &hlen);
        if (!head) {
            if (evbuffer_get_length(in) > MAX_RESPONSE_HEAD)
                conn_fail(c, F_HTTP, "response head longer than %d bytes", MAX_RESPONSE_HEAD);
            return;
        }
        if (!check_response(c, head, hlen))
            return;
        evbuffer_drain(in, hlen);
        uint64_t t = bench_mono_us();
        c->w->sum_upgrade += t - c->t_req;
        c->t_req = t;
        c->state = ST_WELCOME;
        if (!send_hello(c))
            return;
    }
    if (c->state >= ST_WELCOME)
        process_frames(c);
}

/* The negotiated version, cipher, group and server key, once per run. */
static void note_tls_info(struct conn *c)
{
    SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
    pthread_mutex_lock(&tls_info_lock);
    if (!tls_info[0] && ssl) {
        const char *keytype = "?";
        int bits = 0;
        X509 *cert = SSL_get1_peer_certificate(ssl);
        if (cert) {
            EVP_PKEY *pk = X509_get0_pubkey(cert);
            if (pk) {
                keytype = EVP_PKEY_get0_type_name(pk);
                bits = EVP_PKEY_get_bits(pk);
                if (!keytype)
                    keytype = "?";
            }
        }
        int group = SSL_get_negotiated_group(ssl);
        const char *gname = group > 0 ? OBJ_nid2sn(group) : NULL;
        snprintf(tls_info, sizeof tls_info, "%s %s, key exchange %s, server key %s %d bits",
                 SSL_get_version(ssl), SSL_get_cipher_name(ssl), gname ? gname : "?", keytype, bits);
        X509_free(cert);
    }
    pthread_mutex_unlock(&tls_info_lock);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) {             /* TLS handshake done */
        c->t_tls = bench_mono_us();
        note_tls_info(c);
        send_request(c);
        return;
    }
    if (c->state == ST_CLOSING) {
        if (what & BEV_EVENT_TIMEOUT)
            c->w->close_timeouts++;
        conn_free(c);
        return;
    }
    if (c->state == ST_IDLE) {
        conn_ended(c);
        return;
    }
    static const char *const phase[] = {"tcp", "tls", "http", "welcome", "the snapshot"};
    const char *ph = phase[c->state];
    enum fail_kind broke = c->state == ST_TLS ? F_TLS : F_CLOSED;
    if (what & BEV_EVENT_TIMEOUT) {
        conn_fail(c, F_TIMEOUT, "no progress for %.1f s while waiting for %s", opt.timeout, ph);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        conn_fail(c, broke, "broker closed the connection during %s", ph);
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    char tls_err[160];
    if (opt.ep.tls && bench_take_tls_error(bev, tls_err, sizeof tls_err)) {
        conn_fail(c, broke, "TLS error during %s: %s", ph, tls_err);
        return;
    }
    conn_fail(c, broke, "connection error during %s: %s", ph, err ? strerror(err) : "unknown");
}

static struct timeval timeout_tv(void)
{
    return (struct timeval){(time_t)opt.timeout, (suseconds_t)((opt.timeout - (long)opt.timeout) * 1e6)};
}

static void on_tcp_connected(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    event_free(c->cev);
    c->cev = NULL;
    if (what & EV_TIMEOUT) {
        conn_fail(c, F_TIMEOUT, "TCP connect took longer than %.1f s", opt.timeout);
        return;
    }
    int err = bench_connect_error(fd);
    if (err) {
        conn_fail(c, F_CONNECT, "connect to %s:%s: %s", opt.ep.host, opt.ep.port, strerror(err));
        return;
    }
    struct worker *w = c->w;
    c->t_tcp = c->t_tls = bench_mono_us();
    const char *why;
    c->bev = bench_bufferevent_new(w->base, fd, opt.ep.tls ? ssl_ctx : NULL, opt.ep.sni, &why);
    if (!c->bev) {
        conn_fail(c, opt.ep.tls ? F_TLS : F_CONNECT, "%s", why);
        return;
    }
    if (opt.ep.tls)
        c->state = ST_TLS;
    c->fd = -1;                                   /* the bufferevent owns it now */
    struct timeval tv = timeout_tv();
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (!opt.ep.tls)
        send_request(c);
}

/* Undoes a launch that failed before its connection was under way. */
static void launch_failed(struct worker *w, struct conn *c, const char *what)
{
    int err = errno;
    if (atomic_fetch_add_explicit(&w->fail_by[F_CONNECT], 1, memory_order_relaxed) == 0)
        snprintf(w->first_err[F_CONNECT], sizeof w->first_err[F_CONNECT], "%s: %s%s", what,
                 strerror(err), err == EMFILE ? " (out of file descriptors)" : "");
    atomic_fetch_add_explicit(&w->failed, 1, memory_order_relaxed);
    handshake_over(c);
    if (c->cev)
        event_free(c->cev);
    if (c->fd >= 0)
        close(c->fd);
    list_del(w, c);
    free(c);
    w->live--;
}

/* Starts one connection. Returns false on an immediate failure (counted). */
static bool launch(struct worker *w)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        atomic_fetch_add_explicit(&w->fail_by[F_CONNECT], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&w->failed, 1, memory_order_relaxed);
        return false;
    }
    c->w = w;
    c->fd = -1;
    c->state = ST_TCP;
    c->t0 = bench_mono_us();
    ws_reader_init(&c->rd, WS_ROLE_CLIENT, MAX_MESSAGE);
    list_add(w, c);
    w->live++;
    w->launched++;
    w->handshaking++;
    atomic_store_explicit(&w->inflight, w->handshaking, memory_order_relaxed);

    const char *what;
    int fd = bench_connect_start(&dest, &what);
    if (fd < 0) {
        launch_failed(w, c, what);
        return false;
    }
    c->fd = fd;
    c->cev = event_new(w->base, fd, EV_WRITE, on_tcp_connected, c);
    if (!c->cev) {
        launch_failed(w, c, "event_new");
        return false;
    }
    struct timeval tv = timeout_tv();
    event_add(c->cev, &tv);
    return true;
}

/* Starts connections until the worker's quota is met. An immediate failure
 * retries from a timer, so that a broken setup cannot recurse or spin. */
static void refill(struct worker *w)
{
    if (w->stopping)
        return;
    for (;;) {
        if (opt.mode == MODE_CONNECT) {
            if (w->live >= w->target)
                return;
        } else {
            if (w->launched >= w->target || w->handshaking >= opt.ramp / opt.threads + 1 ||
                atomic_load_explicit(&ramp_over, memory_order_relaxed))
                return;
        }
        if (!launch(w)) {
            struct timeval tv = {0, 10000};
            evtimer_add(w->retry_ev, &tv);
            return;
        }
    }
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    refill(arg);
}

static void on_grace(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    while (w->head)
        conn_free(w->head);
    event_base_loopbreak(w->base);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct worker *w = arg;
    w->stopping = true;
    evtimer_del(w->retry_ev);
    struct conn *next;
    for (struct conn *c = w->head; c; c = next) {
        next = c->next;
        if (c->state == ST_IDLE) {
            close_politely(c);
        } else if (c->state != ST_CLOSING) {
            w->aborted++;
            conn_free(c);
        }
    }
    if (w->live == 0) {
        event_base_loopbreak(w->base);
        return;
    }
    struct timeval tv = {STOP_GRACE_S, 0};
    evtimer_add(w->grace_ev, &tv);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    refill(w);
    event_base_dispatch(w->base);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* setting up, and the run                                                   */

static void setup_tls(void)
{
    ssl_ctx = bench_tls_client_ctx(2);
    /* every connection a full handshake: no session resumption */
    SSL_CTX_set_session_cache_mode(ssl_ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ssl_ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(ssl_ctx, SSL_MODE_RELEASE_BUFFERS);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

struct totals {
    long ok, failed, open_idle, dropped, inflight, close_timeouts, aborted;
    long fail_by[F_COUNT];
};

static void sum_live(struct totals *t)
{
    memset(t, 0, sizeof *t);
    for (int i = 0; i < opt.threads; i++) {
        struct worker *w = &workers[i];
        t->ok += atomic_load_explicit(&w->ok, memory_order_relaxed);
        t->failed += atomic_load_explicit(&w->failed, memory_order_relaxed);
        t->open_idle += atomic_load_explicit(&w->open_idle, memory_order_relaxed);
        t->dropped += atomic_load_explicit(&w->dropped, memory_order_relaxed);
        t->inflight += atomic_load_explicit(&w->inflight, memory_order_relaxed);
        for (int k = 0; k < F_COUNT; k++)
            t->fail_by[k] += atomic_load_explicit(&w->fail_by[k], memory_order_relaxed);
    }
}

static void stop_workers(void)
{
    for (int i = 0; i < opt.threads; i++)
        event_active(workers[i].stop_ev, EV_READ, 0);
    for (int i = 0; i < opt.threads; i++)
        pthread_join(workers[i].thread, NULL);
}

static void progress(uint64_t t0, long *last_ok, long rss)
{
    struct totals t;
    sum_live(&t);
    double el = (double)(bench_mono_us() - t0) / 1e6;
    if (opt.mode == MODE_CONNECT)
        fprintf(stderr, "[%5.1fs] handshakes %ld (+%ld/s)  failures %ld  in flight %ld\n", el,
                t.ok, t.ok - *last_ok, t.failed, t.inflight);
    else if (rss >= 0)
        fprintf(stderr, "[%5.1fs] open %ld/%ld (+%ld/s)  failures %ld  handshaking %ld  dropped %ld"
                "  broker RSS %ld KiB\n", el, t.open_idle, opt.connections, t.ok - *last_ok,
                t.failed, t.inflight, t.dropped, rss);
    else
        fprintf(stderr, "[%5.1fs] open %ld/%ld (+%ld/s)  failures %ld  handshaking %ld  dropped %ld\n",
                el, t.open_idle, opt.connections, t.ok - *last_ok, t.failed, t.inflight, t.dropped);
    *last_ok = t.ok;
}

static void init_workers(void)
{
    workers = calloc((size_t)opt.threads, sizeof *workers);
    if (!workers)
        bench_die(2, "out of memory");
    for (int i = 0; i < opt.threads; i++) {
        struct worker *w = &workers[i];
        w->id = i;
        w->target = opt.connections / opt.threads + (i < opt.connections % opt.threads);
        w->base = event_base_new();
        if (!w->base)
            bench_die(2, "event_base_new failed");
        w->stop_ev = event_new(w->base, -1, 0, on_stop, w);
        w->retry_ev = evtimer_new(w->base, on_retry, w);
        w->grace_ev = evtimer_new(w->base, on_grace, w);
        if (!w->stop_ev || !w->retry_ev || !w->grace_ev)
            bench_die(2, "event_new failed");
    }
}

/* What a run measured, read by the summary and the JSON. */
struct run {
    uint64_t t0, t_end, t_ramp_end;
    long rss_before, rss_after;
    double cpu_before, cpu_after, cpu_ramp;
    double self_cpu0;
    struct bench_host_cpu host0;
    long open_at_measure;
};

static void sleep_to_tick(struct run *r, uint64_t until, uint64_t *next_tick, long *last_ok)
{
    bench_sleep_until_us(*next_tick < until ? *next_tick : until);
    if (bench_mono_us() >= *next_tick) {
        long rss = opt.mode == MODE_IDLE && opt.broker_pid ? bench_proc_rss_kib(opt.broker_pid) : -1;
        progress(r->t0, last_ok, rss);
        *next_tick += 1000000;
    }
}

/* connect: handshakes as fast as they complete, for --duration. */
static void run_connect(struct run *r)
{
    long last_ok = 0;
    uint64_t next_tick = r->t0 + 1000000;
    uint64_t deadline = r->t0 + (uint64_t)(opt.duration * 1e6);
    while (!bench_got_signal && bench_mono_us() < deadline)
        sleep_to_tick(r, deadline, &next_tick, &last_ok);
    r->t_end = bench_mono_us();
    if (opt.broker_pid)
        r->cpu_after = bench_proc_cpu_s(opt.broker_pid);
}

/* idle: open them all (within --duration), hold --hold seconds, measure. */
static void run_idle(struct run *r)
{
    long last_ok = 0;
    uint64_t next_tick = r->t0 + 1000000;
    uint64_t deadline = r->t0 + (uint64_t)(opt.duration * 1e6);
    bool timed_out = false;
    for (;;) {
        struct totals t;
        sum_live(&t);
        if (t.ok + t.failed >= opt.connections && t.inflight == 0)
            break;
        if (bench_got_signal)
            break;
        if (bench_mono_us() >= deadline) {
            timed_out = true;
            break;
        }
        sleep_to_tick(r, bench_mono_us() + 50000, &next_tick, &last_ok);
    }
    atomic_store(&ramp_over, true);
    r->t_ramp_end = bench_mono_us();
    if (opt.broker_pid)
        r->cpu_ramp = bench_proc_cpu_s(opt.broker_pid);
    if (timed_out)
        fprintf(stderr, "%s: could not open %ld connections within --duration %.1f s; holding what "
                "is open\n", tool->program, opt.connections, opt.duration);
    else if (!bench_got_signal)
        fprintf(stderr, "%s: opening done in %.2f s; holding %.1f s\n", tool->program,
                (double)(r->t_ramp_end - r->t0) / 1e6, opt.hold);
    uint64_t hold_end = r->t_ramp_end + (uint64_t)(opt.hold * 1e6);
    while (!bench_got_signal && bench_mono_us() < hold_end)
        sleep_to_tick(r, hold_end, &next_tick, &last_ok);
    struct totals t;
    sum_live(&t);
    r->open_at_measure = t.open_idle;
    if (opt.broker_pid) {
        r->rss_after = bench_proc_rss_kib(opt.broker_pid);
        r->cpu_after = bench_proc_cpu_s(opt.broker_pid);
    }
    r->t_end = bench_mono_us();
}

/* ------------------------------------------------------------------------ */
/* the summary and the JSON                                                  */

/* Everything after the threads have stopped. */
struct result {
    struct totals tot;
    double self_cpu, elapsed, broker_cpu, broker_cpu_ramp, ramp_s;
    uint32_t p50, p99, pmax;
    size_t nlat;
    uint64_t sum_tcp, sum_tls, sum_upgrade, sum_welcome, sum_subscribe;
    double per_s, per_cpu, kib_per_conn;
    bool host_ok;
    struct bench_host_share host;
    double host_broker, host_self;    /* the broker's and the tool's cores over the whole run */
    bool pass;
};

/* Every handshake's latency, from all threads, sorted for the quantiles. */
static void latency_quantiles(struct result *x)
{
    size_t nlat = 0;
    for (int i = 0; i < opt.threads; i++)
        nlat += workers[i].nlat;
    uint32_t *lat = malloc((nlat ? nlat : 1) * sizeof *lat);
    if (!lat)
        bench_die(2, "out of memory");
    size_t k = 0;
    for (int i = 0; i < opt.threads; i++) {
        if (workers[i].nlat)
            memcpy(lat + k, workers[i].lat, workers[i].nlat * sizeof *lat);
        k += workers[i].nlat;
    }
    qsort(lat, nlat, sizeof *lat, cmp_u32);
    x->nlat = nlat;
    if (nlat) {
        x->p50 = lat[(nlat - 1) / 2];
        size_t i99 = (size_t)((double)nlat * 0.99 + 0.999999);
        x->p99 = lat[(i99 ? i99 : 1) - 1];
        x->pmax = lat[nlat - 1];
    }
    free(lat);
}

/* Exit status 0 (see handshake_tool.strict). */
static bool passed(const struct run *r, const struct result *x)
{
    if (!tool->strict)
        return opt.mode == MODE_CONNECT ? x->tot.ok > 0 : r->open_at_measure == opt.connections;
    if (bench_got_signal || x->tot.failed)
        return false;
    if (opt.mode == MODE_CONNECT)
        return x->tot.ok > 0;
    return r->open_at_measure == opt.connections && x->tot.dropped == 0;
}

static void compute_result(const struct run *r, struct result *x)
{
    memset(x, 0, sizeof *x);
    sum_live(&x->tot);
    x->self_cpu = bench_self_cpu_s() - r->self_cpu0;
    for (int i = 0; i < opt.threads; i++) {
        struct worker *w = &workers[i];
        x->tot.close_timeouts += w->close_timeouts;
        x->tot.aborted += w->aborted;
        x->sum_tcp += w->sum_tcp;
        x->sum_tls += w->sum_tls;
        x->sum_upgrade += w->sum_upgrade;
        x->sum_welcome += w->sum_welcome;
        x->sum_subscribe += w->sum_subscribe;
    }
    latency_quantiles(x);
    x->elapsed = (double)(r->t_end - r->t0) / 1e6;
    x->broker_cpu = r->cpu_before >= 0 && r->cpu_after >= 0 ? r->cpu_after - r->cpu_before : -1;
    x->broker_cpu_ramp = r->cpu_before >= 0 && r->cpu_ramp >= 0 ? r->cpu_ramp - r->cpu_before : -1;
    x->ramp_s = r->t_ramp_end ? (double)(r->t_ramp_end - r->t0) / 1e6 : 0;
    if (opt.mode == MODE_CONNECT) {
        x->per_s = x->elapsed > 0 ? (double)x->tot.ok / x->elapsed : 0;
        x->per_cpu = x->broker_cpu > 0 ? (double)x->tot.ok / x->broker_cpu : 0;
    } else {
        x->per_cpu = x->broker_cpu_ramp > 0 ? (double)x->tot.ok / x->broker_cpu_ramp : 0;
        if (r->rss_before >= 0 && r->rss_after >= 0 && r->open_at_measure)
            x->kib_per_conn = (double)(r->rss_after - r->rss_before) / (double)r->open_at_measure;
    }
    /* the host line covers the whole run, closing included */
    double wall = (double)(bench_mono_us() - r->t0) / 1e6;
    double c = opt.broker_pid ? bench_proc_cpu_s(opt.broker_pid) : -1;
    x->host_broker = c >= 0 && wall > 0 ? (c - r->cpu_before) / wall : 0;
    x->host_self = wall > 0 ? x->self_cpu / wall : 0;
    struct bench_host_cpu host1 = bench_host_cpu_read();
    x->host_ok = bench_host_share(&r->host0, &host1, wall, (x->host_broker * wall) + x->self_cpu,
                                  &x->host);
    x->pass = passed(r, x);
}

static void print_failures(const struct result *x)
{
    for (int f = 0; f < F_COUNT; f++) {
        if (!x->tot.fail_by[f])
            continue;
        const char *first = "";
        for (int i = 0; i < opt.threads && !*first; i++)
            first = workers[i].first_err[f];
        printf("    %-22s%ld  first: %s\n", fail_names[f], x->tot.fail_by[f], first);
    }
}

static void print_latency_and_memory(const struct run *r, const struct result *x)
{
    double nl = x->nlat ? (double)x->nlat : 1.0;
    if (x->nlat) {
        printf("  handshake latency       p50 %u us, p99 %u us, max %u us (%zu samples; TCP "
               "connect to Welcome)\n", x->p50, x->p99, x->pmax, x->nlat);
        printf("  mean per phase          tcp %.0f us, tls %.0f us, upgrade %.0f us, hello->welcome "
               "%.0f us", (double)x->sum_tcp / nl, (double)x->sum_tls / nl,
               (double)x->sum_upgrade / nl, (double)x->sum_welcome / nl);
        if (opt.collection)
            printf(", subscribe->snapshot %.0f us", (double)x->sum_subscribe / nl);
        printf("\n");
    }
    if (opt.mode == MODE_IDLE && r->rss_before >= 0 && r->rss_after >= 0) {
        printf("  broker RSS before       %ld KiB\n", r->rss_before);
        printf("  broker RSS after        %ld KiB (after %.1f s idle)\n", r->rss_after,
               (double)(r->t_end - r->t_ramp_end) / 1e6);
        printf("  KiB per connection      %.2f\n", x->kib_per_conn);
    }
}

static void print_cpu(const struct result *x)
{
    if (x->broker_cpu >= 0) {
        if (opt.mode == MODE_CONNECT) {
            printf("  broker CPU              %.2f s (utime+stime), %.0f%% of one core over the run\n",
                   x->broker_cpu, x->elapsed > 0 ? 100.0 * x->broker_cpu / x->elapsed : 0);
            printf("  handshakes per broker CPU-second  %.0f\n", x->per_cpu);
        } else {
            printf("  broker CPU              %.2f s while opening, %.2f s in all (utime+stime)\n",
                   x->broker_cpu_ramp, x->broker_cpu);
            printf("  handshakes per broker CPU-second  %.0f (while opening)\n", x->per_cpu);
        }
    }
    printf("  bench CPU               %.2f s, %.0f%% of one core%s\n", x->self_cpu,
           x->elapsed > 0 ? 100.0 * x->self_cpu / x->elapsed : 0,
           (opt.mode == MODE_CONNECT && x->elapsed > 0 && x->self_cpu / x->elapsed > 0.9 * opt.threads)
               ? " (the client may be the bottleneck: try more --threads/cores)" : "");
}

static void print_summary(const struct run *r, const struct result *x)
{
    printf("%s %s %s (%s), %d client thread%s\n", tool->program,
           opt.mode == MODE_CONNECT ? "connect" : "idle", opt.url, opt.ep.tls ? "TLS" : "plain",
           opt.threads, opt.threads == 1 ? "" : "s");
    if (opt.ep.tls && tls_info[0])
        printf("  tls                     %s\n", tls_info);
    if (opt.mode == MODE_CONNECT) {
        printf("  concurrency             %ld connections in flight, %.2f s\n", opt.connections,
               x->elapsed);
        printf("  handshakes completed    %ld\n", x->tot.ok);
        printf("  handshakes per second   %.0f\n", x->per_s);
        printf("  failures                %ld\n", x->tot.failed);
    } else {
        printf("  connections open        %ld of %ld (opened in %.2f s, held %.1f s)\n",
               r->open_at_measure, opt.connections, x->ramp_s, (double)(r->t_end - r->t_ramp_end) / 1e6);
        if (opt.collection)
            printf("  subscribed              each to collection '%s' (snapshot received)\n",
                   opt.collection);
        printf("  failures                %ld (dropped by the broker while idle: %ld)\n",
               x->tot.failed, x->tot.dropped);
    }
    print_failures(x);
    print_latency_and_memory(r, x);
    print_cpu(x);
    if (x->host_ok)
        printf("  host CPU                %d cores, %.0f%% busy: broker %.2f, bench %.2f, softirq %.2f,"
               " other processes %.2f cores; hypervisor steal %.2f cores%s\n", x->host.cpus,
               100.0 * x->host.busy / x->host.cpus, x->host_broker, x->host_self, x->host.softirq,
               x->host.other, x->host.steal, x->host.other > 0.2 || x->host.steal > 0.05
                   ? " (others were busy: numbers are noisy)" : "");
    if (x->tot.close_timeouts || x->tot.aborted)
        printf("  closing                 %ld Close handshakes timed out after %d s, %ld "
               "in-flight connections cut at the end\n", x->tot.close_timeouts, CLOSE_WAIT_S,
               x->tot.aborted);
    if (tool->strict)
        printf("  result                  %s\n", x->pass ? "PASS" : "FAIL");
    fflush(stdout);
}

/* What the JSON is written from. */
struct report {
    const struct run *r;
    const struct result *x;
};

static void write_json_body(FILE *j, const void *arg)
{
    const struct run *r = ((const struct report *)arg)->r;
    const struct result *x = ((const struct report *)arg)->x;
    fprintf(j, "{\n  \"mode\": \"%s\",\n  \"tls\": %s,\n  \"threads\": %d,\n"
               "  \"connections\": %ld,\n  \"elapsed_s\": %.3f,\n",
            opt.mode == MODE_CONNECT ? "connect" : "idle", opt.ep.tls ? "true" : "false",
            opt.threads, opt.connections, x->elapsed);
    fprintf(j, "  \"handshakes\": %ld,\n  \"failures\": %ld,\n", x->tot.ok, x->tot.failed);
    if (opt.mode == MODE_CONNECT)
        fprintf(j, "  \"handshakes_per_s\": %.1f,\n", x->per_s);
    else
        fprintf(j, "  \"open\": %ld,\n  \"dropped\": %ld,\n  \"ramp_s\": %.3f,\n",
                r->open_at_measure, x->tot.dropped, x->ramp_s);
    if (opt.collection) {
        fprintf(j, "  \"subscribed_collection\": ");
        bench_json_str(j, opt.collection);
        fprintf(j, ",\n");
    }
    fprintf(j, "  \"latency_us\": {\"p50\": %u, \"p99\": %u, \"max\": %u, \"samples\": %zu},\n",
            x->p50, x->p99, x->pmax, x->nlat);
    if (opt.mode == MODE_IDLE && r->rss_before >= 0 && r->rss_after >= 0)
        fprintf(j, "  \"rss_before_kib\": %ld,\n  \"rss_after_kib\": %ld,\n"
                   "  \"kib_per_connection\": %.3f,\n", r->rss_before, r->rss_after, x->kib_per_conn);
    if (x->broker_cpu >= 0)
        fprintf(j, "  \"broker_cpu_s\": %.3f,\n  \"handshakes_per_broker_cpu_s\": %.1f,\n",
                x->broker_cpu, x->per_cpu);
    if (opt.ep.tls && tls_info[0]) {
        fprintf(j, "  \"tls_info\": ");
        bench_json_str(j, tls_info);
        fprintf(j, ",\n");
    }
    if (x->host_ok)
        fprintf(j, "  \"other_processes_cpu_cores\": %.2f,\n  \"steal_cores\": %.2f,\n", x->host.other,
                x->host.steal);
    fprintf(j, "  \"bench_cpu_s\": %.3f,\n  \"pass\": %s\n}\n", x->self_cpu,
            x->pass ? "true" : "false");
}

static void free_workers(void)
{
    for (int i = 0; i < opt.threads; i++) {
        event_free(workers[i].stop_ev);
        event_free(workers[i].retry_ev);
        event_free(workers[i].grace_ev);
        event_base_free(workers[i].base);
        free(workers[i].lat);
    }
    free(workers);
    SSL_CTX_free(ssl_ctx);
}

/* The broker's RSS and CPU before anything connects; exits 2 when its
 * /proc files cannot be read. */
static void read_broker_before(struct run *r)
{
    if (!opt.broker_pid) {
        if (opt.mode == MODE_IDLE)
            fprintf(stderr, "%s: note: without --broker-pid the broker's memory is not measured\n",
                    tool->program);
        return;
    }
    r->rss_before = bench_broker_rss_before(opt.broker_pid);
    r->cpu_before = bench_proc_cpu_s(opt.broker_pid);
}

int handshake_load_main(const struct handshake_tool *t, int argc, char **argv)
{
    tool = t;
    char hint[128];
    snprintf(hint, sizeof hint, "(try %s%s%s --help)", tool->program, tool->scenario ? " " : "",
             tool->scenario ? tool->scenario : "");
    bench_set_program(tool->program, hint);
    parse_args(argc, argv);
    char what[64];
    snprintf(what, sizeof what, "--connections %ld", opt.connections);
    bench_raise_nofile((unsigned long long)opt.connections, FD_MARGIN, what);
    bench_resolve(&opt.ep, &dest);
    struct run r = {.rss_before = -1, .rss_after = -1, .cpu_before = -1, .cpu_after = -1,
                    .cpu_ramp = -1};
    read_broker_before(&r);
    if (evthread_use_pthreads() < 0)
        bench_die(2, "evthread_use_pthreads failed");
    if (opt.ep.tls)
        setup_tls();
    bench_catch_signals();
    init_workers();
    fprintf(stderr, "%s: %s %s, %ld %s%s%s%s, %d thread%s%s\n", tool->program,
            opt.mode == MODE_CONNECT ? "connect" : "idle", opt.url, opt.connections,
            opt.mode == MODE_CONNECT ? "in flight" : "connections",
            opt.collection ? " subscribed to '" : "", opt.collection ? opt.collection : "",
            opt.collection ? "'" : "", opt.threads, opt.threads == 1 ? "" : "s",
            dest.spread_src ? ", sources 127.0.X.Y" : "");

    r.self_cpu0 = bench_self_cpu_s();
    r.host0 = bench_host_cpu_read();
    r.t0 = bench_mono_us();
    for (int i = 0; i < opt.threads; i++)
        if (!bench_thread_start(&workers[i].thread, worker_main, &workers[i]))
            bench_die(2, "pthread_create failed");
    if (opt.mode == MODE_CONNECT)
        run_connect(&r);
    else
        run_idle(&r);
    if (bench_got_signal)
        fprintf(stderr, "%s: interrupted, stopping\n", tool->program);
    stop_workers();

    struct result x;
    compute_result(&r, &x);
    print_summary(&r, &x);
    struct report report = {&r, &x};
    bench_write_json(opt.json_path, write_json_body, &report);
    free_workers();
    return x.pass ? 0 : 1;
}
