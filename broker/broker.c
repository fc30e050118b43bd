/* broker: the server library's front door (nebula_broker.h). It owns the
 * acceptor side: the listening socket, the admin endpoint, the worker
 * threads and the shared broker_context they read. Accepted sockets are
 * dealt round robin to the workers, which own them from then on. */
#include "nebula_broker.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "address.h"
#include "admin.h"
#include "broker_context.h"
#include "log.h"
#include "memory_storage.h"
#include "redis_storage.h"
#include "sync_hub.h"
#include "worker.h"

#define LISTEN_BACKLOG 4096

struct nebula_broker {
    broker_context context;          /* read by every worker */
    struct event_base *base;         /* acceptor thread */
    host_port listen_address;
    host_port admin_address;
    bool has_admin;
    char *tls_cert_file;
    char *tls_key_file;
    char **origins;
    size_t origin_count;
    token_table *tokens;
    bool owns_storage;
    bool storage_thread_started;     /* the acceptor thread is known to the storage */
    bool owns_base;
    struct event *cleanup_timer;     /* retention: clear_events_before */
    double retention_s;
    struct timeval cleanup_interval;

    int worker_count;
    worker **workers;
    nebula_worker_metrics *metrics;  /* one per worker, aligned */
    size_t next_worker;

    struct evconnlistener *listener;
    admin_server *admin;
    uint16_t listen_port;
    int done_fd;                     /* workers write here when they end */
    struct event *done_event;
    int workers_finished;
    bool started;
    bool accepting;                  /* read by /readyz */
    bool stopping;
};

const char *nebula_strerror(int status)
{
    switch (status) {
    case NEBULA_OK: return "success";
    case NEBULA_E_INVALID: return "invalid option";
    case NEBULA_E_TLS: return "TLS certificate or key unusable";
    case NEBULA_E_LISTEN: return "cannot listen";
    case NEBULA_E_SYSTEM: return "system resources exhausted";
    case NEBULA_E_STATE: return "called in the wrong state";
    default: return "unknown error";
    }
}

static int online_cores(void)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    return cores > 0 ? (int)cores : 1;
}

void nebula_broker_options_init(nebula_broker_options *opts)
{
    memset(opts, 0, sizeof *opts);
    opts->listen = "127.0.0.1:8080";
    opts->workers = online_cores();
    opts->admin_listen = "127.0.0.1:9090";
    opts->max_message_size = 1u << 20;
    opts->max_connections = 100000;
    opts->idle_timeout_s = 60;
    opts->handshake_timeout_s = 10;
    opts->drain_timeout_s = 10;
    opts->logging_enabled = true;
    opts->log_level = NEBULA_LOG_INFO;
    opts->conflict_strategy = SYNC_LAST_WRITE_WINS;
    opts->retention_s = 7 * 24 * 3600;
    opts->cleanup_interval_s = 3600;
    opts->ring_capacity = 4096;
    opts->redis_max_log = REDIS_STORAGE_DEFAULT_MAX_LOG;
    opts->max_output_buffer = 1u << 20;
}

static struct timeval seconds_to_timeval(double seconds)
{
    struct timeval tv;
    tv.tv_sec = (time_t)seconds;
    tv.tv_usec = (suseconds_t)((seconds - (double)tv.tv_sec) * 1e6);
    return tv;
}

static bool valid_duration(double seconds)
{
    return isfinite(seconds) && seconds > 0 && seconds <= 86400;
}

/* Writes a one-line reason into the caller's buffer (which may be NULL). */
static int fail_with(int status, char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_with(int status, char *err, size_t err_len, const char *fmt, ...)
{
    if (err && err_len) {
        va_list args;
        va_start(args, fmt);
        vsnprintf(err, err_len, fmt, args);
        va_end(args);
    }
    return status;
}

static int validate_options(const nebula_broker_options *o, char *err, size_t err_len)
{
    if (!o->listen)
        return fail_with(NEBULA_E_INVALID, err, err_len, "listen address missing");
    if ((o->tls_cert_file == NULL) != (o->tls_key_file == NULL))
        return fail_with(NEBULA_E_INVALID, err, err_len,
                         "TLS needs both a certificate and a key (--tls-cert and --tls-key)");
    if (o->workers < 1 || o->workers > 1024)
        return fail_with(NEBULA_E_INVALID, err, err_len, "workers must be 1-1024, not %d",
                         o->workers);
    if (o->max_connections < 1)
        return fail_with(NEBULA_E_INVALID, err, err_len, "max-connections must be at least 1");
    if (o->max_message_size < 1 || o->max_message_size > UINT32_MAX)
        return fail_with(NEBULA_E_INVALID, err, err_len,
                         "max-message-size must be 1-4294967295 bytes");
    if (!valid_duration(o->idle_timeout_s) || !valid_duration(o->handshake_timeout_s) ||
        !valid_duration(o->drain_timeout_s) || !valid_duration(o->cleanup_interval_s))
        return fail_with(NEBULA_E_INVALID, err, err_len,
                         "timeouts must be more than 0 and at most 86400 seconds");
    if (!isfinite(o->retention_s) || o->retention_s <= 0)
        return fail_with(NEBULA_E_INVALID, err, err_len, "retention must be more than 0 seconds");
    if (o->ring_capacity < 2 || (o->ring_capacity & (o->ring_capacity - 1)) != 0)
        return fail_with(NEBULA_E_INVALID, err, err_len,
                         "ring capacity must be a power of two, at least 2");
    if (o->conflict_strategy > SYNC_CLIENT_WINS)
        return fail_with(NEBULA_E_INVALID, err, err_len, "unknown conflict strategy");
    for (size_t i = 0; i < o->conflict_rule_count; i++)
        if (!o->conflict_rules[i].pattern || !*o->conflict_rules[i].pattern ||
            o->conflict_rules[i].strategy > SYNC_CLIENT_WINS)
            return fail_with(NEBULA_E_INVALID, err, err_len, "conflict rule %zu is invalid", i + 1);
    if (o->max_output_buffer < 1024)
        return fail_with(NEBULA_E_INVALID, err, err_len, "max output buffer must be at least 1024 bytes");
    return NEBULA_OK;
}

static int copy_origins(nebula_broker *b, const nebula_broker_options *o)
{
    if (o->allowed_origin_count == 0)
        return NEBULA_OK;
    b->origins = calloc(o->allowed_origin_count, sizeof *b->origins);
    if (!b->origins)
        return NEBULA_E_SYSTEM;
    for (size_t i = 0; i < o->allowed_origin_count; i++) {
        if (!(b->origins[i] = strdup(o->allowed_origins[i])))
            return NEBULA_E_SYSTEM;
        b->origin_count++;
    }
    b->context.handshake_policy.allowed_origins = (const char *const *)b->origins;
    b->context.handshake_policy.allowed_origin_count = b->origin_count;
    return NEBULA_OK;
}

static int load_tls(nebula_broker *b, const nebula_broker_options *o, char *err, size_t err_len)
{
    if (!o->tls_cert_file)
        return NEBULA_OK;
    b->tls_cert_file = strdup(o->tls_cert_file);
    b->tls_key_file = strdup(o->tls_key_file);
    if (!b->tls_cert_file || !b->tls_key_file)
        return NEBULA_E_SYSTEM;
    char reason[512];
    SSL_CTX *ctx = tls_context_create(b->tls_cert_file, b->tls_key_file, reason, sizeof reason);
    if (!ctx)
        return fail_with(NEBULA_E_TLS, err, err_len, "%s", reason);
    tls_holder_init(&b->context.tls, ctx);
    b->context.tls_enabled = true;
    return NEBULA_OK;
}

static void configure_context(nebula_broker *b, const nebula_broker_options *o)
{
    broker_context *c = &b->context;
    c->max_message_size = o->max_message_size;
    c->max_connections = o->max_connections;
    c->idle_timeout = seconds_to_timeval(o->idle_timeout_s);
    c->handshake_timeout = seconds_to_timeval(o->handshake_timeout_s);
    c->drain_timeout = seconds_to_timeval(o->drain_timeout_s);
    c->handshake_policy.path = NEBULA_WS_PATH;
    c->handshake_policy.subprotocol = NEBULA_WS_SUBPROTOCOL;
    c->conflict_strategy = o->conflict_strategy;
    c->max_output_buffer = o->max_output_buffer;
    c->slow_consumer_close = o->slow_consumer_close;
    b->retention_s = o->retention_s;
    b->cleanup_interval = seconds_to_timeval(o->cleanup_interval_s);
}

static int copy_conflict_rules(nebula_broker *b, const nebula_broker_options *o)
{
    broker_context *c = &b->context;
    if (o->conflict_rule_count == 0)
        return NEBULA_OK;
    c->conflict_rules = calloc(o->conflict_rule_count, sizeof *c->conflict_rules);
    if (!c->conflict_rules)
        return NEBULA_E_SYSTEM;
    for (size_t i = 0; i < o->conflict_rule_count; i++) {
        c->conflict_rules[i].strategy = o->conflict_rules[i].strategy;
        if (!(c->conflict_rules[i].pattern = strdup(o->conflict_rules[i].pattern)))
            return NEBULA_E_SYSTEM;
        c->conflict_rule_count++;
    }
    return NEBULA_OK;
}

static int configure_auth(nebula_broker *b, const nebula_broker_options *o, char *err,
                          size_t err_len)
{
    broker_context *c = &b->context;
    if (o->authenticate) {
        c->auth_mode = BROKER_AUTH_CALLBACK;
        c->authenticate = o->authenticate;
        c->authenticate_data = o->authenticate_data;
        return NEBULA_OK;
    }
    if (o->tokens_file) {
        char reason[512];
        b->tokens = token_table_load(o->tokens_file, reason, sizeof reason);
        if (!b->tokens)
            return fail_with(NEBULA_E_INVALID, err, err_len, "--tokens: %s", reason);
        c->auth_mode = BROKER_AUTH_TOKENS;
        c->tokens = b->tokens;
        return NEBULA_OK;
    }
    c->auth_mode = BROKER_AUTH_NONE;
    auth_grant_allow_all(&c->anonymous_grant, "default");
    return NEBULA_OK;
}

static int setup_storage(nebula_broker *b, const nebula_broker_options *o, char *err,
                         size_t err_len)
{
    broker_context *c = &b->context;
    c->hub = sync_hub_create(o->workers, o->ring_capacity);
    if (!c->hub)
        return fail_with(NEBULA_E_SYSTEM, err, err_len, "out of memory");
    if (o->storage) {
        c->storage = o->storage;
    } else if (o->storage_kind == NEBULA_STORAGE_REDIS) {
        redis_storage_options ro;
        redis_storage_options_init(&ro);
        if (o->redis_url)
            ro.url = o->redis_url;
        if (o->redis_prefix)
            ro.prefix = o->redis_prefix;
        ro.max_log = o->redis_max_log;
        char reason[256];
        c->storage = redis_storage_create(&ro, reason, sizeof reason);
        b->owns_storage = true;
        if (!c->storage)
            return fail_with(NEBULA_E_INVALID, err, err_len, "%s", reason);
        const char *at = strrchr(ro.url, '@');   /* never log a password */
        log_info("storage: redis at %s%s (key prefix %s)", at ? "redis://***@" : "",
                 at ? at + 1 : ro.url, ro.prefix);
    } else {
        c->storage = memory_storage_create(NULL);
        b->owns_storage = true;
        if (!c->storage)
            return fail_with(NEBULA_E_SYSTEM, err, err_len, "cannot create the memory storage");
    }
    c->storage->ops->set_listener(c->storage->ctx, sync_hub_on_events, c->hub);
    sync_hub_set_storage(c->hub, c->storage);
    return NEBULA_OK;
}

static int parse_addresses(nebula_broker *b, const nebula_broker_options *o, char *err,
                           size_t err_len)
{
    if (!host_port_parse(o->listen, &b->listen_address))
        return fail_with(NEBULA_E_INVALID, err, err_len,
                         "listen address must be HOST:PORT, not '%s'", o->listen);
    b->has_admin = o->admin_listen != NULL;
    if (b->has_admin && !host_port_parse(o->admin_listen, &b->admin_address))
        return fail_with(NEBULA_E_INVALID, err, err_len,
                         "admin listen address must be HOST:PORT, not '%s'", o->admin_listen);
    return NEBULA_OK;
}

int nebula_broker_create(const nebula_broker_options *opts, nebula_broker **out, char *err,
                         size_t err_len)
{
    *out = NULL;
    int status = validate_options(opts, err, err_len);
    if (status != NEBULA_OK)
        return status;
    nebula_broker *b = calloc(1, sizeof *b);
    if (!b)
        return fail_with(NEBULA_E_SYSTEM, err, err_len, "out of memory");
    b->done_fd = -1;
    b->worker_count = opts->workers;
    nebula_log_configure(opts->logging_enabled, opts->log_level);
    configure_context(b, opts);
    if ((status = parse_addresses(b, opts, err, err_len)) != NEBULA_OK ||
        (status = load_tls(b, opts, err, err_len)) != NEBULA_OK ||
        (status = configure_auth(b, opts, err, err_len)) != NEBULA_OK ||
        (status = setup_storage(b, opts, err, err_len)) != NEBULA_OK)
        goto fail;
    b->base = opts->event_base;
    b->owns_base = opts->event_base == NULL;
    if (b->owns_base)
        b->base = event_base_new();
    if (copy_origins(b, opts) != NEBULA_OK || copy_conflict_rules(b, opts) != NEBULA_OK ||
        !b->base) {
        status = fail_with(NEBULA_E_SYSTEM, err, err_len, "out of memory");
        goto fail;
    }
    *out = b;
    return NEBULA_OK;
fail:
    nebula_broker_free(b);
    return status;
}

/* ---- acceptor ------------------------------------------------------------ */

static void on_accept(struct evconnlistener *listener, evutil_socket_t fd,
                      struct sockaddr *addr, int addr_len, void *arg)
{
    (void)listener;
    (void)addr;
    (void)addr_len;
    nebula_broker *b = arg;
    worker *w = b->workers[b->next_worker];
    b->next_worker = (b->next_worker + 1) % (size_t)b->worker_count;
    worker_hand_off(w, fd);
}

static void on_accept_error(struct evconnlistener *listener, void *arg)
{
    (void)listener;
    (void)arg;
    /* EMFILE/ENFILE: keep serving; libevent retries on the next readiness. */
    log_warn("accept failed: %s", strerror(errno));
}

static void on_worker_done(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    nebula_broker *b = arg;
    uint64_t count = 0;
    if (read(fd, &count, sizeof count) != sizeof count)
        return;
    b->workers_finished += (int)count;
    if (b->workers_finished >= b->worker_count) {
        log_info("all workers stopped");
        event_base_loopexit(b->base, NULL);
    }
}

static void on_cleared(void *user_data, int status, uint64_t count)
{
    (void)user_data;
    if (status != SYNC_STORAGE_OK)
        log_warn("retention: clearing old events failed: %s", sync_storage_strerror(status));
    else if (count)
        log_info("retention: cleared %llu events", (unsigned long long)count);
}

/* The seed's retention: events older than retention_s, cleared every
 * cleanup_interval. */
static void on_cleanup_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    nebula_broker *b = arg;
    struct timeval now;
    gettimeofday(&now, NULL);
    int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_usec / 1000;
    sync_storage *storage = b->context.storage;
    storage->ops->clear_events_before(storage->ctx, now_ms - (int64_t)(b->retention_s * 1000),
                                      on_cleared, NULL);
}

static int start_cleanup(nebula_broker *b, char *err, size_t err_len)
{
    b->cleanup_timer = event_new(b->base, -1, EV_PERSIST, on_cleanup_timer, b);
    if (!b->cleanup_timer || event_add(b->cleanup_timer, &b->cleanup_interval) != 0)
        return fail_with(NEBULA_E_SYSTEM, err, err_len, "cannot start the retention timer");
    return NEBULA_OK;
}

static int open_listener(nebula_broker *b, char *err, size_t err_len)
{
    struct sockaddr_storage addr;
    socklen_t len;
    if (!host_port_resolve(&b->listen_address, &addr, &len))
        return fail_with(NEBULA_E_LISTEN, err, err_len, "cannot resolve listen address %s",
                         b->listen_address.host);
    b->listener = evconnlistener_new_bind(b->base, on_accept, b,
                                          LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
                                              LEV_OPT_CLOSE_ON_EXEC,
                                          LISTEN_BACKLOG, (struct sockaddr *)&addr, (int)len);
    if (!b->listener)
        return fail_with(NEBULA_E_LISTEN, err, err_len, "cannot listen on %s:%u: %s",
                         b->listen_address.host, b->listen_address.port, strerror(errno));
    evconnlistener_set_error_cb(b->listener, on_accept_error);
    b->listen_port = socket_local_port(evconnlistener_get_fd(b->listener));
    return NEBULA_OK;
}

static int open_admin(nebula_broker *b, char *err, size_t err_len)
{
    if (!b->has_admin)
        return NEBULA_OK;
    admin_sources sources = {.workers = b->metrics, .worker_count = (size_t)b->worker_count,
                             .accepting = &b->accepting, .storage = b->context.storage};
    char reason[256];
    b->admin = admin_server_start(b->base, &b->admin_address, &sources, reason, sizeof reason);
    if (!b->admin)
        return fail_with(NEBULA_E_LISTEN, err, err_len, "%s", reason);
    return NEBULA_OK;
}

static int start_workers(nebula_broker *b, char *err, size_t err_len)
{
    b->metrics = aligned_alloc(_Alignof(nebula_worker_metrics),
                               sizeof *b->metrics * (size_t)b->worker_count);
    b->workers = calloc((size_t)b->worker_count, sizeof *b->workers);
    b->done_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!b->metrics || !b->workers || b->done_fd < 0)
        return fail_with(NEBULA_E_SYSTEM, err, err_len, "cannot allocate workers");
    memset(b->metrics, 0, sizeof *b->metrics * (size_t)b->worker_count);
    b->done_event = event_new(b->base, b->done_fd, EV_READ | EV_PERSIST, on_worker_done, b);
    if (!b->done_event || event_add(b->done_event, NULL) != 0)
        return fail_with(NEBULA_E_SYSTEM, err, err_len, "cannot watch workers");
    for (int i = 0; i < b->worker_count; i++) {
        b->workers[i] = worker_create(&b->context, &b->metrics[i], i, b->done_fd);
        if (!b->workers[i] || !worker_start(b->workers[i]))
            return fail_with(NEBULA_E_SYSTEM, err, err_len, "cannot start worker %d", i);
    }
    return NEBULA_OK;
}

/* The acceptor thread calls the storage too (retention). */
static int start_storage_thread(nebula_broker *b, char *err, size_t err_len)
{
    sync_storage *storage = b->context.storage;
    if (!storage->ops->thread_start)
        return NEBULA_OK;
    if (storage->ops->thread_start(storage->ctx, b->base) != SYNC_STORAGE_OK)
        return fail_with(NEBULA_E_SYSTEM, err, err_len, "the storage cannot serve this thread");
    b->storage_thread_started = true;
    return NEBULA_OK;
}

int nebula_broker_start(nebula_broker *b, char *err, size_t err_len)
{
    if (b->started)
        return fail_with(NEBULA_E_STATE, err, err_len, "broker already started");
    b->started = true;
    /* A peer that vanishes must make write() fail with EPIPE, not kill the
     * process: OpenSSL writes with plain write(). */
    signal(SIGPIPE, SIG_IGN);
    int status;
    if ((status = start_storage_thread(b, err, err_len)) != NEBULA_OK ||
        (status = start_workers(b, err, err_len)) != NEBULA_OK ||
        (status = open_listener(b, err, err_len)) != NEBULA_OK ||
        (status = open_admin(b, err, err_len)) != NEBULA_OK ||
        (status = start_cleanup(b, err, err_len)) != NEBULA_OK)
        return status;   /* nebula_broker_free() cleans up */
    b->accepting = true;
    log_info("ready: listen=%s://%s:%u admin=%s%s%s%u workers=%d",
             b->context.tls_enabled ? "wss" : "ws", b->listen_address.host, b->listen_port,
             b->admin ? "http://" : "none", b->admin ? b->admin_address.host : "",
             b->admin ? ":" : "", b->admin ? admin_server_port(b->admin) : 0, b->worker_count);
    return NEBULA_OK;
}

void nebula_broker_stop(nebula_broker *b)
{
    if (!b->started || b->stopping)
        return;
    b->stopping = true;
    b->accepting = false;
    if (b->listener) {
        evconnlistener_free(b->listener);
        b->listener = NULL;
    }
    if (b->cleanup_timer)
        event_del(b->cleanup_timer);
    log_info("draining %zu sessions (up to %.1f s)", nebula_broker_clients_count(b),
             (double)b->context.drain_timeout.tv_sec + b->context.drain_timeout.tv_usec / 1e6);
    for (int i = 0; i < b->worker_count; i++)
        if (b->workers[i])
            worker_drain(b->workers[i]);
}

int nebula_broker_reload_tls(nebula_broker *b)
{
    if (!b->context.tls_enabled)
        return NEBULA_E_STATE;
    char err[512];
    SSL_CTX *ctx = tls_context_create(b->tls_cert_file, b->tls_key_file, err, sizeof err);
    if (!ctx) {
        log_error("TLS reload failed, keeping the current certificate: %s", err);
        return NEBULA_E_TLS;
    }
    tls_holder_replace(&b->context.tls, ctx);
    log_info("TLS certificate and key reloaded from %s", b->tls_cert_file);
    return NEBULA_OK;
}

sync_storage *nebula_broker_storage(nebula_broker *b)
{
    return b->context.storage;
}

size_t nebula_broker_clients_count(const nebula_broker *b)
{
    return atomic_load_explicit(&b->context.sessions, memory_order_relaxed);
}

struct event_base *nebula_broker_event_base(nebula_broker *b)
{
    return b->base;
}

uint16_t nebula_broker_listen_port(const nebula_broker *b)
{
    return b->listen_port;
}

uint16_t nebula_broker_admin_port(const nebula_broker *b)
{
    return b->admin ? admin_server_port(b->admin) : 0;
}

bool nebula_broker_uses_tls(const nebula_broker *b)
{
    return b->context.tls_enabled;
}

static void stop_workers(nebula_broker *b)
{
    if (!b->workers)
        return;
    for (int i = 0; i < b->worker_count; i++)
        if (b->workers[i])
            worker_drain(b->workers[i]);
    for (int i = 0; i < b->worker_count; i++) {
        if (b->workers[i])
            worker_join(b->workers[i]);
        worker_free(b->workers[i]);
    }
    free(b->workers);
}

void nebula_broker_free(nebula_broker *b)
{
    if (!b)
        return;
    if (b->listener)
        evconnlistener_free(b->listener);
    stop_workers(b);
    admin_server_free(b->admin);
    if (b->cleanup_timer)
        event_free(b->cleanup_timer);
    if (b->context.storage) {
        if (b->storage_thread_started)
            b->context.storage->ops->thread_stop(b->context.storage->ctx);
        b->context.storage->ops->set_listener(b->context.storage->ctx, NULL, NULL);
        if (b->owns_storage)
            sync_storage_destroy(b->context.storage);
    }
    sync_hub_free(b->context.hub);
    token_table_free(b->tokens);
    if (b->done_event)
        event_free(b->done_event);
    if (b->done_fd >= 0)
        close(b->done_fd);
    free(b->metrics);
    if (b->base && b->owns_base)
        event_base_free(b->base);
    for (size_t i = 0; i < b->context.conflict_rule_count; i++)
        free(b->context.conflict_rules[i].pattern);
    free(b->context.conflict_rules);
    if (b->context.tls_enabled)
        tls_holder_destroy(&b->context.tls);
    for (size_t i = 0; i < b->origin_count; i++)
        free(b->origins[i]);
    free(b->origins);
    free(b->tls_cert_file);
    free(b->tls_key_file);
    free(b);
}
