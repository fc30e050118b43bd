/* redis_link: one hiredis connection on one libevent loop that stays up.
 *
 * A link connects on creation, authenticates and selects the database of
 * its endpoint, and only then reports itself up. When the connection
 * breaks (or a command stays unanswered for REDIS_LINK_COMMAND_TIMEOUT_S)
 * every command in flight completes with a NULL reply, the owner is told the
 * link is down, and the link reconnects with exponential backoff (50 ms
 * doubling to 5 s, with jitter) until it is up again.
 *
 * Everything happens on the loop's thread: create, send, free and the
 * callbacks. Commands are pipelined: send never waits for a reply.
 */
#ifndef NEBULA_REDIS_LINK_H
#define NEBULA_REDIS_LINK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <hiredis/async.h>

#define REDIS_LINK_COMMAND_TIMEOUT_S 5

struct event_base;

/* Where Redis is: redis://[user:password@]host[:port][/db]. */
typedef struct redis_endpoint {
    char host[256];
    int port;                   /* default 6379 */
    int db;                     /* default 0 */
    char user[128];             /* empty: none (AUTH password alone) */
    char password[256];         /* empty: no AUTH */
} redis_endpoint;

/* Parses url into ep; on failure writes a one-line reason into err. */
bool redis_endpoint_parse(const char *url, redis_endpoint *ep, char *err, size_t err_len);

/* Counters shared by every link of a storage (updated atomically). */
typedef struct redis_link_stats {
    atomic_ulong connects;      /* connections that came up */
    atomic_ulong disconnects;   /* connections lost or given up */
    atomic_ulong timeouts;      /* connections dropped for an unanswered command */
} redis_link_stats;

typedef struct redis_link redis_link;

/* up: the link just came up (true) or went down (false). */
typedef void (*redis_link_state_fn)(void *arg, redis_link *link, bool up);
/* reply is NULL when the link failed before the answer came. */
typedef void (*redis_reply_fn)(void *arg, redisReply *reply);

/* name appears in log lines ("worker 2", "announcer"). For a pub/sub link
 * (pubsub true), commands are not timed: subscriptions answer forever. */
redis_link *redis_link_create(struct event_base *base, const redis_endpoint *ep, const char *name,
                              bool pubsub, redis_link_state_fn on_state, void *arg,
                              redis_link_stats *stats);

bool redis_link_is_up(const redis_link *link);

/* Queues one command. Returns false, without calling reply, when the link
 * is not up. Otherwise reply is called exactly once. */
bool redis_link_send(redis_link *link, redis_reply_fn reply, void *arg, int argc,
                     const char **argv, const size_t *argv_len);

/* Pub/sub links: SUBSCRIBE and friends, with hiredis's own callback, which
 * is called for the confirmation and for every message (NULL reply when the
 * link goes down). Returns false when the link is not up. */
bool redis_link_subscribe_command(redis_link *link, redisCallbackFn *fn, void *privdata, int argc,
                                  const char **argv, const size_t *argv_len);

/* Drops the connection now (in-flight commands get NULL) and reconnects
 * with backoff. */
void redis_link_reset(redis_link *link, const char *why);

/* Closes the link; in-flight commands complete with NULL first. */
void redis_link_free(redis_link *link);

#endif
