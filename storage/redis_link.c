/* redis_link: a hiredis async connection with handshake, watchdog and
 * reconnection (see redis_link.h). */
#include "redis_link.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <openssl/rand.h>

#include "log.h"

#define BACKOFF_FIRST_MS 50
#define BACKOFF_MAX_MS 5000
#define WATCHDOG_PERIOD_S 1

struct redis_link {
    struct event_base *base;
    redis_endpoint ep;
    char name[64];
    bool pubsub;
    redis_link_state_fn on_state;
    void *arg;
    redis_link_stats *stats;

    redisAsyncContext *ac;      /* NULL while disconnected */
    bool up;                    /* handshake answered */
    bool freeing;
    unsigned backoff_ms;
    struct event *reconnect_timer;
    struct event *watchdog;
    unsigned long in_flight;    /* commands sent, not yet answered */
    time_t last_progress;       /* last answer, or first send after none in flight */
    time_t last_tick;           /* of the watchdog */
};

/* A command in flight: the caller's callback. */
typedef struct pending_reply {
    redis_link *link;
    redis_reply_fn reply;
    void *arg;
} pending_reply;

/* ---- endpoint -------------------------------------------------------------- */

static bool fail(char *err, size_t err_len, const char *url, const char *why)
{
    snprintf(err, err_len, "--redis-url '%s': %s", url, why);
    return false;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Copies [from, to) percent-decoded into out (user names and passwords may
 * hold '@' or ':' written as %40 and %3A). */
static bool decode_into(const char *from, const char *to, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = from; p < to; p++) {
        int c = (unsigned char)*p;
        if (c == '%') {
            if (to - p < 3 || hex_value(p[1]) < 0 || hex_value(p[2]) < 0)
                return false;
            c = hex_value(p[1]) * 16 + hex_value(p[2]);
            p += 2;
        }
        if (n + 1 >= cap)
            return false;
        out[n++] = (char)c;
    }
    out[n] = '\0';
    return true;
}

static bool parse_number(const char *from, const char *to, long max, int *out)
{
    if (from == to || to - from > 10)
        return false;
    long v = 0;
    for (const char *p = from; p < to; p++) {
        if (*p < '0' || *p > '9')
            return false;
        v = v * 10 + (*p - '0');
    }
    if (v > max)
        return false;
    *out = (int)v;
    return true;
}

static bool parse_credentials(const char *from, const char *to, redis_endpoint *ep)
{
    const char *colon = memchr(from, ':', (size_t)(to - from));
    if (!colon)   /* redis://password@host: AUTH password */
        return decode_into(from, to, ep->password, sizeof ep->password);
    return decode_into(from, colon, ep->user, sizeof ep->user) &&
           decode_into(colon + 1, to, ep->password, sizeof ep->password);
}

bool redis_endpoint_parse(const char *url, redis_endpoint *ep, char *err, size_t err_len)
{
    static const char scheme[] = "redis://";
    memset(ep, 0, sizeof *ep);
    ep->port = 6379;
    if (strncmp(url, scheme, sizeof scheme - 1) != 0)
        return fail(err, err_len, url, "must start with redis:// (rediss:// is not supported)");
    const char *p = url + sizeof scheme - 1;
    const char *end = p + strlen(p);
    const char *slash = strchr(p, '/');
    const char *authority_end = slash ? slash : end;
    const char *at = NULL;
    for (const char *q = p; q < authority_end; q++)
        if (*q == '@')
            at = q;
    if (at) {
        if (!parse_credentials(p, at, ep))
            return fail(err, err_len, url, "bad user or password (percent-encode '@', ':' and '/')");
        p = at + 1;
    }
    const char *host_end = authority_end;
    const char *colon = memchr(p, ':', (size_t)(authority_end - p));
    if (colon) {
        if (!parse_number(colon + 1, authority_end, 65535, &ep->port) || ep->port == 0)
            return fail(err, err_len, url, "port must be 1..65535");
        host_end = colon;
    }
    if (host_end == p || (size_t)(host_end - p) >= sizeof ep->host)
        return fail(err, err_len, url, "missing or too long host");
    memcpy(ep->host, p, (size_t)(host_end - p));
    if (slash && slash + 1 < end && !parse_number(slash + 1, end, INT_MAX, &ep->db))
        return fail(err, err_len, url, "database must be a number, as in redis://host:6379/0");
    return true;
}

/* ---- connection ---------------------------------------------------------------- */

static unsigned jittered(unsigned ms)
{
    unsigned char r = 0;
    RAND_bytes(&r, 1);
    return ms - ms / 4 + (unsigned)(((unsigned long)ms / 2) * r / 255);
}

static void schedule_reconnect(redis_link *l)
{
    if (l->freeing)
        return;
    unsigned ms = jittered(l->backoff_ms);
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    event_add(l->reconnect_timer, &tv);
    l->backoff_ms = l->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : l->backoff_ms * 2;
}

/* The connection is gone (its context already freed or being freed by
 * hiredis): tell the owner once, then try again later. */
static void link_lost(redis_link *l, const char *why)
{
    bool was_up = l->up;
    l->ac = NULL;
    l->up = false;
    l->in_flight = 0;
    atomic_fetch_add(&l->stats->disconnects, 1);
    if (was_up)
        log_warn("redis %s: connection to %s:%d lost (%s); reconnecting", l->name, l->ep.host,
                 l->ep.port, why);
    else
        log_debug("redis %s: cannot connect to %s:%d (%s); retrying", l->name, l->ep.host,
                  l->ep.port, why);
    if (was_up && l->on_state)
        l->on_state(l->arg, l, false);
    schedule_reconnect(l);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    redis_link *l = ac->data;
    (void)status;
    if (l && l->ac == ac)
        link_lost(l, ac->errstr[0] ? ac->errstr : "closed by the server");
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    redis_link *l = ac->data;
    if (status != REDIS_OK && l && l->ac == ac)
        link_lost(l, ac->errstr[0] ? ac->errstr : "connect failed");   /* hiredis frees ac */
}

/* AUTH or SELECT answered: an error drops the connection (and PING,
 * queued behind them, then completes with NULL). */
static bool handshake_refused(redis_link *l, redisAsyncContext *ac, redisReply *r)
{
    if (r == NULL || l->ac != ac)
        return true;
    if (r->type != REDIS_REPLY_ERROR)
        return false;
    log_error("redis %s: %s:%d refused the handshake: %s", l->name, l->ep.host, l->ep.port,
              r->str);
    redis_link_reset(l, "handshake refused");
    return true;
}

static void on_handshake_step(redisAsyncContext *ac, void *reply, void *privdata)
{
    handshake_refused(privdata, ac, reply);
}

/* PING, the last handshake command, answered: the link is up. */
static void on_handshake_done(redisAsyncContext *ac, void *reply, void *privdata)
{
    redis_link *l = privdata;
    if (handshake_refused(l, ac, reply))
        return;
    l->up = true;
    l->backoff_ms = BACKOFF_FIRST_MS;
    atomic_fetch_add(&l->stats->connects, 1);
    log_info("redis %s: connected to %s:%d db %d", l->name, l->ep.host, l->ep.port, l->ep.db);
    if (l->on_state)
        l->on_state(l->arg, l, true);
}

static void send_handshake(redis_link *l)
{
    if (l->ep.password[0]) {
        if (l->ep.user[0])
            redisAsyncCommand(l->ac, on_handshake_step, l, "AUTH %s %s", l->ep.user,
                              l->ep.password);
        else
            redisAsyncCommand(l->ac, on_handshake_step, l, "AUTH %s", l->ep.password);
    }
    if (l->ep.db != 0)
        redisAsyncCommand(l->ac, on_handshake_step, l, "SELECT %d", l->ep.db);
    redisAsyncCommand(l->ac, on_handshake_done, l, "PING");
}

static void connect_now(redis_link *l)
{
    redisAsyncContext *ac = redisAsyncConnect(l->ep.host, l->ep.port);
    if (ac == NULL) {
        link_lost(l, "out of memory");
        return;
    }
    if (ac->err) {
        char why[128];
        snprintf(why, sizeof why, "%s", ac->errstr);
        redisAsyncFree(ac);
        link_lost(l, why);
        return;
    }
    ac->data = l;
    l->ac = ac;
    redisEnableKeepAlive(&ac->c);
    redisLibeventAttach(ac, l->base);
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    send_handshake(l);
}

static void on_reconnect_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    connect_now(arg);
}

/* A command unanswered for too long means Redis is stuck or the network
 * lost the connection silently: drop it, which fails what is in flight. */
static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redis_link *l = arg;
    time_t now = time(NULL);
    if (now - l->last_tick > 2 * WATCHDOG_PERIOD_S)
        l->last_progress = now;   /* our own loop stalled: Redis gets its full time again */
    l->last_tick = now;
    if (l->pubsub || l->ac == NULL || l->in_flight == 0)
        return;
    if (now - l->last_progress < REDIS_LINK_COMMAND_TIMEOUT_S)
        return;
    atomic_fetch_add(&l->stats->timeouts, 1);
    char why[64];
    snprintf(why, sizeof why, "no answer within %d s", REDIS_LINK_COMMAND_TIMEOUT_S);
    redis_link_reset(l, why);
}

redis_link *redis_link_create(struct event_base *base, const redis_endpoint *ep, const char *name,
                              bool pubsub, redis_link_state_fn on_state, void *arg,
                              redis_link_stats *stats)
{
    redis_link *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->base = base;
    l->ep = *ep;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->pubsub = pubsub;
    l->on_state = on_state;
    l->arg = arg;
    l->stats = stats;
    l->backoff_ms = BACKOFF_FIRST_MS;
    l->last_tick = time(NULL);
    l->reconnect_timer = evtimer_new(base, on_reconnect_timer, l);
    l->watchdog = event_new(base, -1, EV_PERSIST, on_watchdog, l);
    struct timeval period = {.tv_sec = WATCHDOG_PERIOD_S};
    if (!l->reconnect_timer || !l->watchdog || event_add(l->watchdog, &period) != 0) {
        redis_link_free(l);
        return NULL;
    }
    connect_now(l);
    return l;
}

bool redis_link_is_up(const redis_link *link)
{
    return link->up;
}

static void on_command_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    pending_reply *p = privdata;
    redis_link *l = p->link;
    if (reply != NULL && l->in_flight > 0) {
        l->in_flight--;
        l->last_progress = time(NULL);
    }
    p->reply(p->arg, reply);
    free(p);
}

bool redis_link_send(redis_link *link, redis_reply_fn reply, void *arg, int argc,
                     const char **argv, const size_t *argv_len)
{
    if (!link->up)
        return false;
    pending_reply *p = malloc(sizeof *p);
    if (!p)
        return false;
    *p = (pending_reply){.link = link, .reply = reply, .arg = arg};
    if (redisAsyncCommandArgv(link->ac, on_command_reply, p, argc, argv, argv_len) != REDIS_OK) {
        free(p);
        return false;
    }
    if (link->in_flight++ == 0)
        link->last_progress = time(NULL);
    return true;
}

bool redis_link_subscribe_command(redis_link *link, redisCallbackFn *fn, void *privdata, int argc,
                                  const char **argv, const size_t *argv_len)
{
    if (!link->up)
        return false;
    return redisAsyncCommandArgv(link->ac, fn, privdata, argc, argv, argv_len) == REDIS_OK;
}

void redis_link_reset(redis_link *link, const char *why)
{
    redisAsyncContext *ac = link->ac;
    if (ac == NULL)
        return;
    link_lost(link, why);   /* clears link->ac first: the disconnect callback ignores ac */
    redisAsyncFree(ac);     /* in-flight callbacks get NULL */
}

void redis_link_free(redis_link *link)
{
    if (!link)
        return;
    link->freeing = true;
    link->on_state = NULL;
    redisAsyncContext *ac = link->ac;
    link->ac = NULL;
    if (ac)
        redisAsyncFree(ac);
    if (link->reconnect_timer)
        event_free(link->reconnect_timer);
    if (link->watchdog)
        event_free(link->watchdog);
    free(link);
}
