/* nebula-ws-bench: quick transport load tool for nebula-syncd.
 *
 * Two measurements, both over real sockets against a running broker:
 *
 *   --mode connect  WebSocket handshakes per second. Each connection does
 *                   TCP connect [+ TLS handshake] + HTTP upgrade + one Hello
 *                   message, waits for the Welcome reply, then closes (a
 *                   WebSocket Close frame, waiting for the broker's Close or
 *                   EOF). --connections is the concurrency: that many
 *                   connections are kept in flight for --duration seconds.
 *
 *   --mode idle     Broker memory per idle connection. Opens --connections
 *                   connections (at most --ramp of them handshaking at once),
 *                   each completes the upgrade and Hello/Welcome and then
 *                   stays idle (answering pings); reads the broker's VmRSS
 *                   from /proc/<pid>/status before the first connection and
 *                   after --hold seconds of idling, and prints the difference
 *                   per connection. Then closes everything.
 *
 * With --broker-pid, the broker's CPU time (utime+stime from /proc/<pid>/stat)
 * over the run is reported too, and handshakes per broker CPU-second: the
 * number that does not depend on how fast this client is.
 *
 * Design: one libevent event_base per thread (--threads); each thread owns
 * its connections outright, the main thread only reads atomic counters once
 * a second and tells the threads to stop (event_active, which is thread-safe
 * after evthread_use_pthreads()). Every client socket is bound to a source
 * address 127.0.X.Y (rotating over X 1..255, Y 1..254) with
 * IP_BIND_ADDRESS_NO_PORT, so the 4-tuples never run out of ephemeral ports
 * and TIME_WAIT sockets do not get in the way.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
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
#include "ws_frame.h"
#include "ws_handshake.h"

#define SUBPROTOCOL BENCH_SUBPROTOCOL
#define FD_MARGIN 100                 /* fds kept free for stdio, epoll, listeners... */
#define MAX_RESPONSE_HEAD 8192        /* bytes of HTTP response head we accept */
#define MAX_MESSAGE (1u << 20)        /* largest server message we accept */
#define CLOSE_WAIT_S 2                /* wait this long for the broker's Close/EOF */
#define STOP_GRACE_S 3                /* a stopping thread frees what is left after this */

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
};

static struct options opt = {
    .mode = MODE_CONNECT,
    .connections = 0,               /* 0: mode default */
    .duration = 10.0,
    .hold = 5.0,
    .ramp = 256,
    .timeout = 10.0,
    .broker_pid = 0,
    .threads = 1,
};

static void usage(FILE *f, const char *argv0)
{
    fprintf(f,
        "usage: %s --url ws[s]://HOST:PORT/v1/sync [options]\n"
        "\n"
        "Quick transport load tool for nebula-syncd: WebSocket handshakes per second\n"
        "(--mode connect) or broker memory per idle connection (--mode idle).\n"
        "\n"
        "  --url URL            ws://HOST:PORT/PATH or wss://HOST:PORT/PATH (required)\n"
        "  --mode MODE          connect (default) or idle\n"
        "  --connections N      connect: connections kept in flight (default 64);\n"
        "                       idle: connections opened and held (default 1000)\n"
        "  --duration S         connect: how long to run (default 10);\n"
        "                       idle: time limit for opening the connections (default 10)\n"
        "  --hold S             idle: seconds to keep them idle before measuring RSS\n"
        "                       and closing (default 5)\n"
        "  --ramp N             idle: handshakes in flight at once while opening (default 256)\n"
        "  --timeout S          per-handshake time limit (default 10)\n"
        "  --broker-pid PID     read the broker's VmRSS and CPU time from /proc/PID\n"
        "  --threads N          client threads, one event loop each (default 1)\n"
        "  --token T            put T in Hello.auth_token (for brokers that require one)\n"
        "  --json FILE          also write the result as JSON to FILE\n"
        "  -h, --help           this text\n"
        "\n"
        "Each connection: TCP connect from 127.0.X.Y (loopback targets), TLS 1.2+ for\n"
        "wss:// (certificate not verified, SNI 'localhost' for IP literals), GET PATH\n"
        "with Sec-WebSocket-Protocol: " SUBPROTOCOL ", the 101 and its accept key\n"
        "checked, one masked binary frame with a protobuf ClientMessage{hello}, and a\n"
        "binary ServerMessage{welcome} expected back.\n"
        "\n"
        "Progress goes to stderr once a second, the summary to stdout.\n"
        "Exit status: 0 done; 1 nothing succeeded (connect) or not every connection\n"
        "opened (idle); 2 usage, resource-limit or setup error.\n",
        argv0);
}

static double parse_seconds(const char *name, const char *s, double min)
{
    double v;
    if (!bench_scan_double(s, min, 86400.0, &v))
        bench_die_usage("%s: '%s' is not a number of seconds >= %g", name, s, min);
    return v;
}

static void parse_args(int argc, char **argv)
{
    enum { O_URL = 256, O_MODE, O_CONN, O_DUR, O_HOLD, O_RAMP, O_TIMEOUT, O_PID, O_THREADS,
           O_JSON, O_TOKEN };
    static const struct option longopts[] = {
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
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case O_URL: opt.url = optarg; break;
        case O_MODE:
            if (strcmp(optarg, "connect") == 0)
                opt.mode = MODE_CONNECT;
            else if (strcmp(optarg, "idle") == 0)
                opt.mode = MODE_IDLE;
            else
                bench_die_usage("--mode: '%s' is neither connect nor idle", optarg);
            break;
        case O_CONN: opt.connections = bench_option_long("--connections", optarg, 1, 10000000); break;
        case O_DUR: opt.duration = parse_seconds("--duration", optarg, 0.1); break;
        case O_HOLD: opt.hold = parse_seconds("--hold", optarg, 0.0); break;
        case O_RAMP: opt.ramp = bench_option_long("--ramp", optarg, 1, 1000000); break;
        case O_TIMEOUT: opt.timeout = parse_seconds("--timeout", optarg, 0.1); break;
        case O_PID: opt.broker_pid = (pid_t)bench_option_long("--broker-pid", optarg, 1, INT_MAX); break;
        case O_THREADS: opt.threads = (int)bench_option_long("--threads", optarg, 1, 256); break;
        case O_JSON: opt.json_path = optarg; break;
        case O_TOKEN:
            if (strlen(optarg) > 4000)
                bench_die_usage("--token: longer than 4000 bytes");
            opt.token = optarg;
            break;
        case 'h': usage(stdout, argv[0]); exit(0);
        case '?':
        default:
            if (optopt > 0 && optopt < 256)
                bench_die_usage("option -%c is unknown or needs a value", optopt);
            bench_die_usage("option '%s' is unknown or needs a value", argv[optind - 1]);
        }
    }
    if (optind < argc)
        bench_die_usage("unexpected argument '%s'", argv[optind]);
    if (!opt.url)
        bench_die_usage("--url is required");
    bench_parse_url(opt.url, "/v1/sync", &opt.ep);
    if (opt.connections == 0)
        opt.connections = opt.mode == MODE_CONNECT ? 64 : 1000;
    if (opt.threads > opt.connections)
        opt.threads = (int)opt.connections;
}

/* ------------------------------------------------------------------------ */
/* time, /proc                                                               */

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
    F_COUNT
};

static const char *const fail_names[F_COUNT] = {
    "tcp connect", "timeout", "tls handshake", "http response", "upgrade headers",
    "websocket frame", "not a welcome", "closed by broker",
};

static struct bench_dest dest;          /* the broker; sources 127.0.X.Y if loopback */
static SSL_CTX *ssl_ctx;
static atomic_bool ramp_over;           /* idle mode: stop opening new connections */

static pthread_mutex_t tls_info_lock = PTHREAD_MUTEX_INITIALIZER;
static char tls_info[256];              /* negotiated version/cipher/key of the first connection */

enum cstate { ST_TCP, ST_TLS, ST_HTTP, ST_WELCOME, ST_IDLE, ST_CLOSING };

struct worker;

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
    long handshaking;                 /* live and not yet welcomed */
    uint64_t seq;
    bool stopping;

    /* read by the main thread while running */
    atomic_long ok;                   /* Welcomes received */
    atomic_long failed;
    atomic_long inflight;             /* == handshaking */
    atomic_long open_idle;            /* idle mode: established and idle */
    atomic_long dropped;              /* idle mode: closed by the broker while idle */
    atomic_long fail_by[F_COUNT];

    /* read by the main thread after join */
    long close_timeouts;
    long aborted;                     /* in flight when the run stopped */
    char first_err[F_COUNT][200];
    uint32_t *lat;                    /* full handshake latencies, us */
    size_t nlat, caplat;
    uint64_t sum_tcp, sum_tls, sum_upgrade, sum_welcome;
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
    return c->state <= ST_WELCOME;
}

/* Frees everything of c; starts replacements unless stopping. */
static void conn_free(struct conn *c)
{
    struct worker *w = c->w;
    if (handshaking(c)) {
        w->handshaking--;
        atomic_store_explicit(&w->inflight, w->handshaking, memory_order_relaxed);
    }
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

/* One masked client frame (client-to-server frames must be masked, RFC 6455 5.3). */
static void send_frame(struct conn *c, uint8_t opcode, const uint8_t *payload, size_t len)
{
    uint8_t frame[WS_MAX_HEADER_LEN + 4200];
    uint8_t mask[4];
    if (len > sizeof frame - WS_MAX_HEADER_LEN)
        return;
    RAND_bytes(mask, sizeof mask);
    size_t h = bench_ws_header_len(len);
    memcpy(frame + h, payload, len);
    bench_ws_send_masked(c->bev, opcode, frame, h, len, mask);
}

static size_t put_varint(uint8_t *p, size_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

/* The Hello, protobuf-encoded by hand (proto/nebula_sync.proto):
 *   ClientMessage { oneof message { Hello hello = 1; } }
 *   Hello { string client_id = 1; string auth_token = 2; ... }
 * A length-delimited field is the key byte (field_number << 3 | wire type 2)
 * followed by a varint length and the bytes, so field 1 is key 0x0a and
 * field 2 is key 0x12:
 *   0x0a <len(hello)>                        ClientMessage.hello
 *     0x0a <len(id)> <client id bytes>       Hello.client_id
 *     [0x12 <len(token)> <token bytes>]      Hello.auth_token, with --token
 * Lengths below 128 are one byte, which is what the client ids here need. */
static void send_hello(struct conn *c)
{
    uint8_t hello[4100], msg[4200];
    char id[64];
    int idlen = snprintf(id, sizeof id, "nebula-ws-bench-%d-%" PRIu64, c->w->id, c->w->seq++);
    size_t n = 0;
    hello[n++] = 0x0a;
    n += put_varint(hello + n, (size_t)idlen);
    memcpy(hello + n, id, (size_t)idlen);
    n += (size_t)idlen;
    if (opt.token) {
        size_t tl = strlen(opt.token);
        hello[n++] = 0x12;
        n += put_varint(hello + n, tl);
        memcpy(hello + n, opt.token, tl);
        n += tl;
    }
    size_t m = 0;
    msg[m++] = 0x0a;
    m += put_varint(msg + m, n);
    memcpy(msg + m, hello, n);
    m += n;
    send_frame(c, WS_OP_BINARY, msg, m);
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
                           "nebula-ws-bench");
}

static void close_politely(struct conn *c)
{
    uint8_t payload[WS_MAX_CONTROL_PAYLOAD];
    size_t n = ws_close_payload_write(payload, WS_CLOSE_NORMAL, "bench done");
    if (handshaking(c)) {
        c->w->handshaking--;
        atomic_store_explicit(&c->w->inflight, c->w->handshaking, memory_order_relaxed);
    }
    if (c->state == ST_IDLE)
        atomic_fetch_sub_explicit(&c->w->open_idle, 1, memory_order_relaxed);
    c->state = ST_CLOSING;
    send_frame(c, WS_OP_CLOSE, payload, n);
    struct timeval tv = {CLOSE_WAIT_S, 0};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
}

static void on_welcome(struct conn *c)
{
    struct worker *w = c->w;
    uint64_t t = bench_mono_us();
    record_latency(w, t - c->t0);
    w->sum_tcp += c->t_tcp - c->t0;
    w->sum_tls += c->t_tls - c->t_tcp;
    atomic_fetch_add_explicit(&w->ok, 1, memory_order_relaxed);
    if (opt.mode == MODE_CONNECT) {
        close_politely(c);
        return;
    }
    w->handshaking--;
    atomic_store_explicit(&w->inflight, w->handshaking, memory_order_relaxed);
    c->state = ST_IDLE;
    atomic_fetch_add_explicit(&w->open_idle, 1, memory_order_relaxed);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    refill(w);
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

/* Decodes ServerMessage.error { ErrorCode code = 1; string message = 2; } well
 * enough for an error line. */
static void describe_error(const uint8_t *p, size_t n, char *out, size_t cap)
{
    unsigned code = 0;
    const uint8_t *msg = NULL;
    size_t msglen = 0;
    /* p[0] == 0x12, then the length of Error, then its fields */
    size_t i = 1, len = 0;
    int shift = 0;
    while (i < n && shift < 35) {
        len |= (size_t)(p[i] & 0x7f) << shift;
        shift += 7;
        if (!(p[i++] & 0x80))
            break;
    }
    size_t end = i + len < n ? i + len : n;
    while (i < end) {
        uint8_t key = p[i++];
        size_t v = 0;
        shift = 0;
        while (i < end && shift < 35) {
            v |= (size_t)(p[i] & 0x7f) << shift;
            shift += 7;
            if (!(p[i++] & 0x80))
                break;
        }
        if (key == 0x08)
            code = (unsigned)v;
        else if (key == 0x12) {
            msg = p + i;
            msglen = v > end - i ? end - i : v;
            i += msglen;
        } else if ((key & 7) == 2) {
            i += v > end - i ? end - i : v;
        }
    }
    snprintf(out, cap, "ServerMessage.error code %u '%.*s'", code, (int)(msglen > 100 ? 100 : msglen),
             msg ? (const char *)msg : "");
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
            if (c->state == ST_IDLE || c->state == ST_CLOSING) {
                if (c->state == ST_IDLE)
                    atomic_fetch_add_explicit(&c->w->dropped, 1, memory_order_relaxed);
                conn_free(c);
            } else {
                conn_fail(c, F_FRAME, "bad frame from broker: %s (close code %u)",
                          f.error ? f.error : "?", (unsigned)f.close_code);
            }
            return;
        }
        switch (f.opcode) {
        case WS_OP_PING: {
            uint8_t pong[WS_MAX_CONTROL_PAYLOAD];
            size_t n = f.payload_len;
            memcpy(pong, f.payload, n);
            evbuffer_drain(in, f.frame_len);
            if (c->state != ST_CLOSING)
                send_frame(c, WS_OP_PONG, pong, n);
            continue;
        }
        case WS_OP_PONG:
            evbuffer_drain(in, f.frame_len);
            continue;
        case WS_OP_CLOSE:
            if (c->state == ST_CLOSING) {
                conn_free(c);                 /* the close handshake is complete */
            } else if (c->state == ST_IDLE) {
                atomic_fetch_add_explicit(&c->w->dropped, 1, memory_order_relaxed);
                conn_free(c);
            } else {
                conn_fail(c, F_CLOSED, "broker sent Close %u '%.*s' instead of Welcome",
                          (unsigned)f.peer_close_code,
                          (int)(f.close_reason_len > 100 ? 100 : f.close_reason_len),
                          f.close_reason ? (const char *)f.close_reason : "");
            }
            return;
        default:
            break;
        }
        /* a data frame */
        if (c->state == ST_WELCOME) {
            if (!f.message_begins || f.message_opcode != WS_OP_BINARY || f.payload_len == 0) {
                conn_fail(c, F_FRAME, "expected a binary ServerMessage, got opcode %u (%" PRIu64
                          " bytes)", (unsigned)f.opcode, f.payload_len);
                return;
            }
            if (f.payload[0] != 0x0a) {       /* ServerMessage field 1: welcome */
                char why[200];
                if (f.payload[0] == 0x12)
                    describe_error(f.payload, f.payload_len, why, sizeof why);
                else
                    snprintf(why, sizeof why, "ServerMessage starting with 0x%02x, not a welcome (0x0a)",
                             f.payload[0]);
                conn_fail(c, F_SERVER_ERROR, "%s", why);
                return;
            }
            evbuffer_drain(in, f.frame_len);
            c->w->sum_welcome += bench_mono_us() - c->t_req;   /* t_req was reset at the Hello */
            on_welcome(c);
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
        send_hello(c);
    }
    if (c->state >= ST_WELCOME)
        process_frames(c);
}

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
        if (!tls_info[0])
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
        atomic_fetch_add_explicit(&c->w->dropped, 1, memory_order_relaxed);
        conn_free(c);
        return;
    }
    static const char *const phase[] = {"tcp", "tls", "http", "welcome"};
    const char *ph = phase[c->state];
    if (what & BEV_EVENT_TIMEOUT) {
        conn_fail(c, F_TIMEOUT, "no progress for %.1f s while waiting for %s", opt.timeout, ph);
        return;
    }
    if (what & BEV_EVENT_EOF) {
        conn_fail(c, c->state == ST_TLS ? F_TLS : F_CLOSED, "broker closed the connection during %s",
                  ph);
        return;
    }
    int err = EVUTIL_SOCKET_ERROR();
    char tls_err[160];
    if (opt.ep.tls && bench_take_tls_error(bev, tls_err, sizeof tls_err)) {
        conn_fail(c, c->state == ST_TLS ? F_TLS : F_CLOSED, "TLS error during %s: %s", ph, tls_err);
        return;
    }
    conn_fail(c, c->state == ST_TLS ? F_TLS : F_CLOSED, "connection error during %s: %s", ph,
              err ? strerror(err) : "unknown");
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
    int err = 0;
    socklen_t el = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
        err = errno;
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
    struct timeval tv = {(time_t)opt.timeout, (suseconds_t)((opt.timeout - (long)opt.timeout) * 1e6)};
    bufferevent_set_timeouts(c->bev, &tv, &tv);
    bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (!opt.ep.tls)
        send_request(c);
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
    if (fd < 0)
        goto fail;
    c->fd = fd;
    what = "event_new";
    c->cev = event_new(w->base, fd, EV_WRITE, on_tcp_connected, c);
    if (!c->cev)
        goto fail;
    struct timeval tv = {(time_t)opt.timeout, (suseconds_t)((opt.timeout - (long)opt.timeout) * 1e6)};
    event_add(c->cev, &tv);
    return true;

fail:;
    int err = errno;
    if (atomic_fetch_add_explicit(&w->fail_by[F_CONNECT], 1, memory_order_relaxed) == 0)
        snprintf(w->first_err[F_CONNECT], sizeof w->first_err[F_CONNECT], "%s: %s%s", what,
                 strerror(err), err == EMFILE ? " (out of file descriptors)" : "");
    atomic_fetch_add_explicit(&w->failed, 1, memory_order_relaxed);
    w->handshaking--;
    atomic_store_explicit(&w->inflight, w->handshaking, memory_order_relaxed);
    if (c->cev)
        event_free(c->cev);
    if (c->fd >= 0)
        close(c->fd);
    list_del(w, c);
    free(c);
    w->live--;
    return false;
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
/* main                                                                      */

static void raise_nofile(void)
{
    unsigned long long limit = bench_raise_nofile();
    unsigned long long need = (unsigned long long)opt.connections + FD_MARGIN;
    if (limit != RLIM_INFINITY && need > limit) {
        fprintf(stderr,
                "nebula-ws-bench: --connections %ld needs about %llu file descriptors "
                "(%ld + %d spare), but this process may open at most %llu (RLIMIT_NOFILE hard "
                "limit). Use --connections %lld or less, or raise the hard limit "
                "(ulimit -Hn as root). The broker has the same limit on its side.\n",
                opt.connections, need, opt.connections, FD_MARGIN, limit,
                (long long)limit - FD_MARGIN);
        exit(2);
    }
}

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

int main(int argc, char **argv)
{
    bench_set_program("nebula-ws-bench", "(try --help)");
    parse_args(argc, argv);
    raise_nofile();
    bench_resolve(&opt.ep, &dest);

    long rss_before = -1, rss_after = -1;
    double cpu_before = -1, cpu_after = -1;
    if (opt.broker_pid) {
        rss_before = bench_proc_rss_kib(opt.broker_pid);
        cpu_before = bench_proc_cpu_s(opt.broker_pid);
        if (rss_before < 0 || cpu_before < 0)
            bench_die(2, "--broker-pid %d: cannot read /proc/%d/status and /proc/%d/stat (no such "
                      "process?)", (int)opt.broker_pid, (int)opt.broker_pid, (int)opt.broker_pid);
    } else if (opt.mode == MODE_IDLE) {
        fprintf(stderr, "nebula-ws-bench: note: without --broker-pid the broker's memory is not "
                        "measured\n");
    }

    if (evthread_use_pthreads() < 0)
        bench_die(2, "evthread_use_pthreads failed");
    if (opt.ep.tls)
        setup_tls();

    bench_catch_signals();

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

    fprintf(stderr, "nebula-ws-bench: %s %s, %ld %s, %d thread%s%s\n",
            opt.mode == MODE_CONNECT ? "connect" : "idle", opt.url, opt.connections,
            opt.mode == MODE_CONNECT ? "in flight" : "connections", opt.threads,
            opt.threads == 1 ? "" : "s", dest.spread_src ? ", sources 127.0.X.Y" : "");

    double self_cpu0 = bench_self_cpu_s();
    struct bench_host_cpu host0 = bench_host_cpu_read();
    uint64_t t0 = bench_mono_us();
    for (int i = 0; i < opt.threads; i++)
        if (!bench_thread_start(&workers[i].thread, worker_main, &workers[i]))
            bench_die(2, "pthread_create failed");

    long last_ok = 0;
    uint64_t next_tick = t0 + 1000000;
    uint64_t t_end = 0, t_ramp_end = 0;
    double cpu_ramp = -1;
    long open_at_measure = 0;

    if (opt.mode == MODE_CONNECT) {
        uint64_t deadline = t0 + (uint64_t)(opt.duration * 1e6);
        while (!bench_got_signal && bench_mono_us() < deadline) {
            bench_sleep_until_us(next_tick < deadline ? next_tick : deadline);
            if (bench_mono_us() >= next_tick) {
                progress(t0, &last_ok, -1);
                next_tick += 1000000;
            }
        }
        t_end = bench_mono_us();
        if (opt.broker_pid)
            cpu_after = bench_proc_cpu_s(opt.broker_pid);
    } else {
        uint64_t deadline = t0 + (uint64_t)(opt.duration * 1e6);
        bool timed_out = false;
        for (;;) {
            struct totals t;
            sum_live(&t);
            if (t.ok + t.failed >= opt.connections)
                break;
            if (bench_got_signal)
                break;
            if (bench_mono_us() >= deadline) {
                timed_out = true;
                break;
            }
            uint64_t wake = bench_mono_us() + 50000;
            bench_sleep_until_us(wake < next_tick ? wake : next_tick);
            if (bench_mono_us() >= next_tick) {
                progress(t0, &last_ok, opt.broker_pid ? bench_proc_rss_kib(opt.broker_pid) : -1);
                next_tick += 1000000;
            }
        }
        atomic_store(&ramp_over, true);
        t_ramp_end = bench_mono_us();
        if (opt.broker_pid)
            cpu_ramp = bench_proc_cpu_s(opt.broker_pid);
        if (timed_out)
            fprintf(stderr, "nebula-ws-bench: could not open %ld connections within --duration "
                            "%.1f s; holding what is open\n", opt.connections, opt.duration);
        else if (!bench_got_signal)
            fprintf(stderr, "nebula-ws-bench: opening done in %.2f s; holding %.1f s\n",
                    (double)(t_ramp_end - t0) / 1e6, opt.hold);
        uint64_t hold_end = t_ramp_end + (uint64_t)(opt.hold * 1e6);
        while (!bench_got_signal && bench_mono_us() < hold_end) {
            bench_sleep_until_us(next_tick < hold_end ? next_tick : hold_end);
            if (bench_mono_us() >= next_tick) {
                progress(t0, &last_ok, opt.broker_pid ? bench_proc_rss_kib(opt.broker_pid) : -1);
                next_tick += 1000000;
            }
        }
        struct totals t;
        sum_live(&t);
        open_at_measure = t.open_idle;
        if (opt.broker_pid) {
            rss_after = bench_proc_rss_kib(opt.broker_pid);
            cpu_after = bench_proc_cpu_s(opt.broker_pid);
        }
        t_end = bench_mono_us();
    }
    if (bench_got_signal)
        fprintf(stderr, "nebula-ws-bench: interrupted, stopping\n");

    stop_workers();
    double self_cpu = bench_self_cpu_s() - self_cpu0;
    struct bench_host_cpu host1 = bench_host_cpu_read();

    /* totals after join: everything is quiescent */
    struct totals tot;
    sum_live(&tot);
    size_t nlat = 0;
    uint64_t sum_tcp = 0, sum_tls = 0, sum_upgrade = 0, sum_welcome = 0;
    for (int i = 0; i < opt.threads; i++) {
        tot.close_timeouts += workers[i].close_timeouts;
        tot.aborted += workers[i].aborted;
        nlat += workers[i].nlat;
        sum_tcp += workers[i].sum_tcp;
        sum_tls += workers[i].sum_tls;
        sum_upgrade += workers[i].sum_upgrade;
        sum_welcome += workers[i].sum_welcome;
    }
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
    uint32_t p50 = 0, p99 = 0, pmax = 0;
    if (nlat) {
        p50 = lat[(nlat - 1) / 2];
        size_t i99 = (size_t)((double)nlat * 0.99 + 0.999999);
        p99 = lat[(i99 ? i99 : 1) - 1];
        pmax = lat[nlat - 1];
    }
    double nl = nlat ? (double)nlat : 1.0;

    double elapsed = (double)(t_end - t0) / 1e6;
    double broker_cpu = (cpu_before >= 0 && cpu_after >= 0) ? cpu_after - cpu_before : -1;
    double broker_cpu_ramp = (cpu_before >= 0 && cpu_ramp >= 0) ? cpu_ramp - cpu_before : -1;
    double ramp_s = t_ramp_end ? (double)(t_ramp_end - t0) / 1e6 : 0;

    /* summary */
    printf("nebula-ws-bench %s %s (%s), %d client thread%s\n",
           opt.mode == MODE_CONNECT ? "connect" : "idle", opt.url, opt.ep.tls ? "TLS" : "plain",
           opt.threads, opt.threads == 1 ? "" : "s");
    if (opt.ep.tls && tls_info[0])
        printf("  tls                     %s\n", tls_info);
    double per_s = 0, per_cpu = 0, kib_per_conn = 0;
    if (opt.mode == MODE_CONNECT) {
        per_s = elapsed > 0 ? (double)tot.ok / elapsed : 0;
        printf("  concurrency             %ld connections in flight, %.2f s\n", opt.connections,
               elapsed);
        printf("  handshakes completed    %ld\n", tot.ok);
        printf("  handshakes per second   %.0f\n", per_s);
        printf("  failures                %ld\n", tot.failed);
    } else {
        printf("  connections open        %ld of %ld (opened in %.2f s, held %.1f s)\n",
               open_at_measure, opt.connections, ramp_s, (double)(t_end - t_ramp_end) / 1e6);
        printf("  failures                %ld (dropped by the broker while idle: %ld)\n",
               tot.failed, tot.dropped);
    }
    for (int f = 0; f < F_COUNT; f++) {
        if (!tot.fail_by[f])
            continue;
        const char *first = "";
        for (int i = 0; i < opt.threads && !*first; i++)
            first = workers[i].first_err[f];
        printf("    %-22s%ld  first: %s\n", fail_names[f], tot.fail_by[f], first);
    }
    if (nlat) {
        printf("  handshake latency       p50 %u us, p99 %u us, max %u us (%zu samples; TCP "
               "connect to Welcome)\n", p50, p99, pmax, nlat);
        printf("  mean per phase          tcp %.0f us, tls %.0f us, upgrade %.0f us, hello->welcome "
               "%.0f us\n", (double)sum_tcp / nl, (double)sum_tls / nl, (double)sum_upgrade / nl,
               (double)sum_welcome / nl);
    }
    if (opt.mode == MODE_IDLE && rss_before >= 0 && rss_after >= 0) {
        kib_per_conn = open_at_measure ? (double)(rss_after - rss_before) / (double)open_at_measure
                                       : 0;
        printf("  broker RSS before       %ld KiB\n", rss_before);
        printf("  broker RSS after        %ld KiB (after %.1f s idle)\n", rss_after,
               (double)(t_end - t_ramp_end) / 1e6);
        printf("  KiB per connection      %.2f\n", kib_per_conn);
    }
    if (broker_cpu >= 0) {
        if (opt.mode == MODE_CONNECT) {
            per_cpu = broker_cpu > 0 ? (double)tot.ok / broker_cpu : 0;
            printf("  broker CPU              %.2f s (utime+stime), %.0f%% of one core over the run\n",
                   broker_cpu, elapsed > 0 ? 100.0 * broker_cpu / elapsed : 0);
            printf("  handshakes per broker CPU-second  %.0f\n", per_cpu);
        } else {
            per_cpu = broker_cpu_ramp > 0 ? (double)tot.ok / broker_cpu_ramp : 0;
            printf("  broker CPU              %.2f s while opening, %.2f s in all (utime+stime)\n",
                   broker_cpu_ramp, broker_cpu);
            printf("  handshakes per broker CPU-second  %.0f (while opening)\n", per_cpu);
        }
    }
    printf("  bench CPU               %.2f s, %.0f%% of one core%s\n", self_cpu,
           elapsed > 0 ? 100.0 * self_cpu / elapsed : 0,
           (opt.mode == MODE_CONNECT && elapsed > 0 && self_cpu / elapsed > 0.9 * opt.threads)
               ? " (the client may be the bottleneck: try more --threads/cores)" : "");
    double other_cores = -1;
    if (host0.ok && host1.ok && host1.cpus > 0) {
        double wall = (double)(bench_mono_us() - t0) / 1e6;
        double busy = (host1.busy - host0.busy) / wall, sirq = (host1.softirq - host0.softirq) / wall;
        double b = 0;
        if (opt.broker_pid) {
            double c = bench_proc_cpu_s(opt.broker_pid);
            b = c >= 0 ? (c - cpu_before) / wall : 0;
        }
        double me = self_cpu / wall;
        double other = busy - sirq - b - me;
        other_cores = other > 0 ? other : 0.0;
        printf("  host CPU                %d cores, %.0f%% busy: broker %.2f, bench %.2f, softirq %.2f,"
               " other processes %.2f cores%s\n", host1.cpus, 100.0 * busy / host1.cpus, b, me, sirq,
               other > 0 ? other : 0.0,
               other > 0.2 ? " (others were busy: numbers are noisy)" : "");
    }
    if (tot.close_timeouts || tot.aborted)
        printf("  closing                 %ld Close handshakes timed out after %d s, %ld "
               "in-flight connections cut at the end\n", tot.close_timeouts, CLOSE_WAIT_S,
               tot.aborted);
    fflush(stdout);

    if (opt.json_path) {
        FILE *j = fopen(opt.json_path, "w");
        if (!j) {
            fprintf(stderr, "nebula-ws-bench: cannot write %s: %s\n", opt.json_path, strerror(errno));
        } else {
            fprintf(j, "{\n  \"mode\": \"%s\",\n  \"tls\": %s,\n  \"threads\": %d,\n"
                       "  \"connections\": %ld,\n  \"elapsed_s\": %.3f,\n",
                    opt.mode == MODE_CONNECT ? "connect" : "idle", opt.ep.tls ? "true" : "false",
                    opt.threads, opt.connections, elapsed);
            fprintf(j, "  \"handshakes\": %ld,\n  \"failures\": %ld,\n", tot.ok, tot.failed);
            if (opt.mode == MODE_CONNECT)
                fprintf(j, "  \"handshakes_per_s\": %.1f,\n", per_s);
            else
                fprintf(j, "  \"open\": %ld,\n  \"dropped\": %ld,\n  \"ramp_s\": %.3f,\n",
                        open_at_measure, tot.dropped, ramp_s);
            fprintf(j, "  \"latency_us\": {\"p50\": %u, \"p99\": %u, \"max\": %u, \"samples\": %zu},\n",
                    p50, p99, pmax, nlat);
            if (opt.mode == MODE_IDLE && rss_before >= 0 && rss_after >= 0)
                fprintf(j, "  \"rss_before_kib\": %ld,\n  \"rss_after_kib\": %ld,\n"
                           "  \"kib_per_connection\": %.3f,\n", rss_before, rss_after, kib_per_conn);
            if (broker_cpu >= 0)
                fprintf(j, "  \"broker_cpu_s\": %.3f,\n  \"handshakes_per_broker_cpu_s\": %.1f,\n",
                        broker_cpu, per_cpu);
            if (opt.ep.tls && tls_info[0])
                fprintf(j, "  \"tls_info\": \"%s\",\n", tls_info);
            if (other_cores >= 0)
                fprintf(j, "  \"other_processes_cpu_cores\": %.2f,\n", other_cores);
            fprintf(j, "  \"bench_cpu_s\": %.3f\n}\n", self_cpu);
            fclose(j);
        }
    }

    for (int i = 0; i < opt.threads; i++) {
        event_free(workers[i].stop_ev);
        event_free(workers[i].retry_ev);
        event_free(workers[i].grace_ev);
        event_base_free(workers[i].base);
        free(workers[i].lat);
    }
    free(workers);
    free(lat);
    SSL_CTX_free(ssl_ctx);

    if (opt.mode == MODE_CONNECT)
        return tot.ok > 0 ? 0 : 1;
    return open_at_measure == opt.connections ? 0 : 1;
}
