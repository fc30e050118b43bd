/* worker: a thread running one event base that owns its sessions. */
#include "worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "log.h"
#include "session.h"
#include "sync_hub.h"
#include "sync_session.h"

/* Inbox: written by the acceptor, emptied by the worker. */
typedef struct inbox {
    pthread_mutex_t lock;
    evutil_socket_t *fds;
    size_t count, capacity;
    bool drain_requested;
} inbox;

struct worker {
    int index;
    pthread_t thread;
    bool started;
    int wakeup_fd;                 /* eventfd: inbox has work, or new events */
    atomic_bool events_pending;    /* a ring wakeup is already on its way */
    int done_fd;                   /* eventfd of the broker: thread finished */
    inbox inbox;

    /* Owner: the worker thread (after start). */
    struct event_base *base;
    struct event *wakeup_event;
    struct event *deliver_event;   /* delivery later in this loop turn (own thread) */
    struct event *drain_deadline;
    session_host host;
    sync_worker *sync;
    bool draining;
};

static void finish_thread(worker *w)
{
    event_base_loopexit(w->base, NULL);
}

static void on_session_freed(session_host *host)
{
    worker *w = (worker *)((char *)host - offsetof(worker, host));
    if (w->draining && host->sessions == NULL)
        finish_thread(w);
}

static void on_drain_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    size_t dropped = 0;
    for (session *s = w->host.sessions, *next; s; s = next) {
        next = session_next(s);
        session_destroy(s);
        dropped++;
    }
    if (dropped)
        log_warn("worker %d: drain timeout, dropped %zu sessions that did not close", w->index,
                 dropped);
    finish_thread(w);
}

static void start_draining(worker *w)
{
    if (w->draining)
        return;
    w->draining = true;
    for (session *s = w->host.sessions, *next; s; s = next) {
        next = session_next(s);
        session_go_away(s);
    }
    if (w->host.sessions == NULL) {
        finish_thread(w);
        return;
    }
    evtimer_add(w->drain_deadline, &w->host.broker->drain_timeout);
}

static void take_inbox(worker *w, evutil_socket_t **fds, size_t *count, bool *drain)
{
    pthread_mutex_lock(&w->inbox.lock);
    *fds = w->inbox.fds;
    *count = w->inbox.count;
    *drain = w->inbox.drain_requested;
    w->inbox.fds = NULL;
    w->inbox.count = w->inbox.capacity = 0;
    pthread_mutex_unlock(&w->inbox.lock);
}

static void wake(worker *w);

static __thread worker *current_worker;   /* the worker this thread runs, if any */

/* Called by the hub from any thread when a watched channel has new events.
 * Coalesced: one wakeup until the worker has looked. A worker that
 * published the events itself (a Push it handled) delivers them later in
 * the same loop turn, after the input already read: no eventfd round trip. */
static void on_channel_events(void *arg)
{
    worker *w = arg;
    if (atomic_exchange_explicit(&w->events_pending, true, memory_order_acq_rel))
        return;
    if (w == current_worker)
        event_active(w->deliver_event, EV_TIMEOUT, 0);
    else
        wake(w);
}

static void on_deliver_now(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    if (atomic_exchange_explicit(&w->events_pending, false, memory_order_acq_rel))
        sync_worker_deliver(w->sync);
}

static void on_wakeup(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    worker *w = arg;
    uint64_t ignored;
    if (read(fd, &ignored, sizeof ignored) < 0 && errno != EAGAIN)
        log_warn("worker %d: reading wakeup: %s", w->index, strerror(errno));
    /* Clear before delivering, so that events published meanwhile wake us
     * again instead of being missed. */
    if (atomic_exchange_explicit(&w->events_pending, false, memory_order_acq_rel))
        sync_worker_deliver(w->sync);
    evutil_socket_t *fds;
    size_t count;
    bool drain;
    take_inbox(w, &fds, &count, &drain);
    for (size_t i = 0; i < count; i++) {
        if (w->draining)
            evutil_closesocket(fds[i]);
        else
            session_accept(&w->host, fds[i]);
    }
    free(fds);
    if (drain)
        start_draining(w);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    current_worker = w;
    sync_storage *storage = w->host.broker->storage;
    bool storage_thread = storage->ops->thread_start != NULL;
    if (storage_thread && storage->ops->thread_start(storage->ctx, w->base) != SYNC_STORAGE_OK) {
        log_error("worker %d: the storage cannot serve this thread; its pushes will fail",
                  w->index);
        storage_thread = false;
    }
    event_base_dispatch(w->base);
    /* Anything still open (stop without drain) is dropped here. */
    for (session *s = w->host.sessions, *next; s; s = next) {
        next = session_next(s);
        session_destroy(s);
    }
    if (storage_thread)
        storage->ops->thread_stop(storage->ctx);   /* calls in flight complete now */
    uint64_t one = 1;
    if (write(w->done_fd, &one, sizeof one) < 0)
        log_error("worker %d: cannot signal its end: %s", w->index, strerror(errno));
    return NULL;
}

static bool setup_event_base(worker *w)
{
    /* This base is only ever touched by its own thread (cross-thread wakeups
     * go through the eventfd), so libevent's internal locking is not needed. */
    struct event_config *config = event_config_new();
    if (!config)
        return false;
    event_config_set_flag(config, EVENT_BASE_FLAG_NOLOCK);
    w->base = event_base_new_with_config(config);
    event_config_free(config);
    if (!w->base)
        return false;
    /* Every session shares the same two durations: common timeouts keep
     * them in O(1) queues instead of the timer heap. */
    w->host.idle_timeout = event_base_init_common_timeout(w->base, &w->host.broker->idle_timeout);
    w->host.handshake_timeout =
        event_base_init_common_timeout(w->base, &w->host.broker->handshake_timeout);
    w->wakeup_event = event_new(w->base, w->wakeup_fd, EV_READ | EV_PERSIST, on_wakeup, w);
    w->deliver_event = event_new(w->base, -1, 0, on_deliver_now, w);
    w->drain_deadline = evtimer_new(w->base, on_drain_deadline, w);
    return w->host.idle_timeout && w->host.handshake_timeout && w->wakeup_event &&
           w->deliver_event && w->drain_deadline && event_add(w->wakeup_event, NULL) == 0;
}

worker *worker_create(broker_context *broker, nebula_worker_metrics *metrics, int index,
                      int done_fd)
{
    worker *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->index = index;
    w->done_fd = done_fd;
    pthread_mutex_init(&w->inbox.lock, NULL);
    w->wakeup_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    w->host.broker = broker;
    w->host.metrics = metrics;
    w->host.worker_index = index;
    w->host.on_session_freed = on_session_freed;

    uint32_t prefix = 0;
    RAND_bytes((unsigned char *)&prefix, sizeof prefix);
    w->host.session_id_prefix = prefix ^ (uint32_t)index;
    if (w->wakeup_fd < 0 || !setup_event_base(w) ||
        !(w->sync = sync_worker_create(broker, index, w->base, metrics))) {
        log_error("worker %d: cannot set up its event loop", index);
        worker_free(w);
        return NULL;
    }
    w->host.base = w->base;
    w->host.sync = w->sync;
    if (broker->hub)
        sync_hub_set_waker(broker->hub, index, on_channel_events, w);
    return w;
}

bool worker_start(worker *w)
{
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
        log_error("worker %d: cannot start thread: %s", w->index, strerror(rc));
        return false;
    }
    w->started = true;
    return true;
}

static void wake(worker *w)
{
    uint64_t one = 1;
    if (write(w->wakeup_fd, &one, sizeof one) < 0 && errno != EAGAIN)
        log_error("worker %d: cannot wake: %s", w->index, strerror(errno));
}

bool worker_hand_off(worker *w, evutil_socket_t fd)
{
    pthread_mutex_lock(&w->inbox.lock);
    if (w->inbox.count == w->inbox.capacity) {
        size_t capacity = w->inbox.capacity ? w->inbox.capacity * 2 : 64;
        evutil_socket_t *grown = realloc(w->inbox.fds, capacity * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&w->inbox.lock);
            evutil_closesocket(fd);
            return false;
        }
        w->inbox.fds = grown;
        w->inbox.capacity = capacity;
    }
    /* One wakeup per batch: the worker empties the whole inbox each time. */
    bool was_empty = w->inbox.count == 0;
    w->inbox.fds[w->inbox.count++] = fd;
    pthread_mutex_unlock(&w->inbox.lock);
    if (was_empty)
        wake(w);
    return true;
}

void worker_drain(worker *w)
{
    pthread_mutex_lock(&w->inbox.lock);
    w->inbox.drain_requested = true;
    pthread_mutex_unlock(&w->inbox.lock);
    wake(w);
}

void worker_join(worker *w)
{
    if (w->started) {
        pthread_join(w->thread, NULL);
        w->started = false;
    }
}

void worker_free(worker *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->inbox.count; i++)
        evutil_closesocket(w->inbox.fds[i]);
    free(w->inbox.fds);
    pthread_mutex_destroy(&w->inbox.lock);
    if (w->wakeup_event)
        event_free(w->wakeup_event);
    if (w->deliver_event)
        event_free(w->deliver_event);
    if (w->drain_deadline)
        event_free(w->drain_deadline);
    sync_worker_free(w->sync);
    if (w->base)
        event_base_free(w->base);
    if (w->wakeup_fd >= 0)
        close(w->wakeup_fd);
    free(w);
}

