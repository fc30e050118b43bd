/* fanout_target: how a server other than nebula-syncd plugs into
 * `nebula-sync-bench fanout --target NAME` (the driver, sync_bench.c).
 *
 * The driver owns everything that does not depend on the server's protocol:
 * threads and phases, connections (TCP, TLS, the WebSocket upgrade and its
 * 101, frames, pings, the close handshake), when a publisher sends
 * (--inflight, --rate), the seq checks (seq_check.h), latency histograms,
 * counters and the report. A target supplies the protocol: what the upgrade
 * asks for, what a connection says after it until it is ready, how a batch
 * of events goes out, and what a message from the server means (events
 * delivered to a subscriber, an answer to a publisher's batch). It tells the
 * driver through the fanout_conn_* / fanout_sub_* / fanout_pub_* functions
 * below, which the driver implements.
 *
 * Events are written and found again as peer_events.h says (ids and
 * documents of event_format.h); the publishers' counters take the place of
 * nebula-syncd's seqs: every subscriber checks, per publisher, that
 * counter + 1 arrives as 1, 2, 3, ...
 *
 * Threads: every call, both ways, runs on the client thread that owns the
 * connection, and a target's per-connection state belongs to that thread.
 */
#ifndef NEBULA_BENCH_FANOUT_TARGET_H
#define NEBULA_BENCH_FANOUT_TARGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct fanout_conn;                 /* one connection; the driver's */

/* The scenario, fixed before the first connection opens. */
struct fanout_params {
    const char *collection;
    long subscribers, publishers;
    long batch;                     /* events per batch */
    long size;                      /* bytes of each event's document */
    uint64_t run_id;                /* random per run; in every event id */
    const char *token;              /* --token, or NULL */
};

enum fanout_role { FANOUT_SUBSCRIBER, FANOUT_PUBLISHER };

#define FANOUT_CLIENT_ID_MAX 96

struct fanout_target {
    const char *name;               /* the --target value */
    const char *default_url;
    const char *subprotocol;        /* offered in the upgrade request, or NULL for none */
    /* true: the server answers every batch (fanout_pub_settled), and a
     * publisher has at most --inflight batches unanswered. false: a batch
     * counts as done once handed to the socket, and a publisher keeps at
     * most --inflight batches' bytes in the tool's own output buffer. */
    bool acked;
    /* The request path (and query) for the URL's path; out has cap bytes.
     * false: the path does not fit. */
    bool (*request_path)(const char *url_path, char *out, size_t cap);
    /* A connection's state (NULL: out of memory), freed by conn_free. */
    void *(*conn_new)(struct fanout_conn *c);
    void (*conn_free)(void *state);
    /* The 101 is checked: start the protocol. false if c failed. */
    bool (*on_upgraded)(struct fanout_conn *c, void *state);
    /* One whole data message (text or binary), now = CLOCK_MONOTONIC ns at
     * which it was read; msg may be modified. false if c failed. */
    bool (*on_message)(struct fanout_conn *c, void *state, uint8_t *msg, size_t len, uint64_t now);
    /* A publisher sends its events first .. first + batch - 1, published at
     * ts_ns (CLOCK_MONOTONIC ns) as batch number request_id (from 1).
     * false if c failed. */
    bool (*send_batch)(struct fanout_conn *c, void *state, uint64_t request_id, uint64_t first,
                       uint64_t ts_ns);
};

/* ---- the driver, for its targets --------------------------------------- */

const struct fanout_params *fanout_params(void);

enum fanout_role fanout_conn_role(const struct fanout_conn *c);
long fanout_conn_index(const struct fanout_conn *c);    /* 0..S-1 or 0..P-1 */

/* The client id the driver gives this connection (unique per run), into
 * out (FANOUT_CLIENT_ID_MAX bytes). */
void fanout_conn_client_id(const struct fanout_conn *c, char *out);

/* Sends buf[hlen .. hlen + len) as one masked frame, where hlen ==
 * bench_ws_header_len(len): the header is written into buf in front of the
 * payload, the payload masked in place, and the frame copied once into the
 * connection's output. */
void fanout_conn_send(struct fanout_conn *c, uint8_t opcode, uint8_t *buf, size_t hlen, size_t len);

/* Bytes written by the tool but not yet handed to the socket. */
size_t fanout_conn_unsent(const struct fanout_conn *c);

/* The connection failed: counted, the first reason kept, the connection
 * closed. Always returns false. */
bool fanout_conn_fail(struct fanout_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The connection's setup is done: a subscriber now receives what is
 * published, a publisher may send. false if c failed meanwhile. */
bool fanout_conn_ready(struct fanout_conn *c);

/* A subscriber received these events, JSON as peer_events.h writes them
 * (an array of them, or any text that holds them), in a message read at now:
 * each of this run's events is seq-checked and timed, others are counted. */
void fanout_sub_events_json(struct fanout_conn *c, const uint8_t *json, size_t len, uint64_t now);

/* The server answered a publisher's batch request_id (acked targets):
 * accepted, or not with why. false if c failed (an unknown request_id). */
bool fanout_pub_settled(struct fanout_conn *c, uint64_t request_id, bool accepted, const char *why,
                        uint64_t now);

#endif
