/* redis_announcer: the ordering of announcements per collection and the
 * storage's own thread, which listens to pub/sub and fetches the events
 * that close gaps (see redis_storage.h for the promises).
 *
 * Sequencing (any thread, under the collection's lock): a local save's
 * reply is queued by its first seq; every save that follows on directly
 * from `announced` is announced and completed. Completions run on the
 * save's own thread: inline when that is the current thread, else posted
 * to its mailbox while the lock is still held (so that a stopping thread,
 * which takes every collection lock, never misses one).
 *
 * The announcer thread owns the pub/sub connection and a connection for
 * fetches. A fetch reads from `announced` onwards and offers what it gets
 * like a reply; fetches of one collection never overlap, and requests
 * that come while one runs make it run again.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "log.h"
#include "redis_storage_internal.h"

#define FETCH_PAGE 512
#define JUMP_BEHIND 4096            /* further behind than this: announce only the newest page */
#define FETCH_RETRY_MS 100

struct announcer {
    redis_storage *rs;
    pthread_t thread;
    struct event_base *base;
    loop_mailbox *mailbox;
    redis_link *commands;
    redis_link *pubsub;
    atomic_bool commands_up, pubsub_up;
    bool stopping;

    pthread_mutex_t start_lock;
    pthread_cond_t started_cond;
    int start_state;            /* 0 starting, 1 running, -1 failed */
};

/* ---- sequencing (any thread) -------------------------------------------------- */

typedef struct ready_list {
    pending_save *head;
} ready_list;

static void announce(redis_storage *rs, collection_state *col, const sync_event *events,
                     size_t count)
{
    pthread_rwlock_rdlock(&rs->listener_lock);
    if (rs->listener)
        rs->listener(rs->listener_data, col->tenant, col->collection, events, count);
    pthread_rwlock_unlock(&rs->listener_lock);
}

static void complete_posted(void *call)
{
    save_call_complete(call);
}

/* Hands a finished save to its thread. Caller holds col->lock. */
static void settle(redis_storage *rs, pending_save *p, ready_list *ready)
{
    redis_thread *owner = save_call_owner(p->call);
    if (owner != redis_current_thread(rs)) {
        if (loop_mailbox_post(owner->mailbox, complete_posted, p->call)) {
            free(p);
            return;
        }
        log_error("redis storage: out of memory handing a save back to its thread");
    }
    p->next = ready->head;
    ready->head = p;
}

static void run_ready(ready_list *ready)
{
    pending_save *p = ready->head;
    while (p) {
        pending_save *next = p->next;
        save_call_complete(p->call);
        free(p);
        p = next;
    }
}

static void note_gap_state(collection_state *col, bool progressed)
{
    if (!col->pending)
        col->gap_since_ms = 0;
    else if (progressed || col->gap_since_ms == 0)
        col->gap_since_ms = redis_now_ms();
}

/* Announces every queued save that now follows on. Caller holds col->lock. */
static void drain(redis_storage *rs, collection_state *col, ready_list *ready)
{
    bool progressed = false;
    pending_save *p;
    while ((p = col->pending) != NULL) {
        if (p->last_seq > col->announced && p->first_seq != col->announced + 1)
            break;
        col->pending = p->next;
        if (p->last_seq > col->announced) {
            const sync_event *events;
            size_t count;
            save_call_accepted(p->call, &events, &count);
            announce(rs, col, events, count);
            col->announced = p->last_seq;
        }
        progressed = true;
        settle(rs, p, ready);
    }
    note_gap_state(col, progressed);
}

/* A new epoch (or the first news of the collection): queued saves belong
 * to the old log and complete unannounced. Caller holds col->lock. */
static void reset_sequence(redis_storage *rs, collection_state *col, const char *epoch,
                           uint64_t announced, ready_list *ready)
{
    if (col->known)
        log_info("redis storage: %s/%s has a new epoch; announcing from seq %" PRIu64,
                 col->tenant, col->collection, announced + 1);
    col->known = true;
    snprintf(col->epoch, sizeof col->epoch, "%s", epoch);
    col->announced = announced;
    pending_save *p = col->pending;
    col->pending = NULL;
    while (p) {
        pending_save *next = p->next;
        settle(rs, p, ready);
        p = next;
    }
}

static void insert_pending(collection_state *col, pending_save *p)
{
    pending_save **at = &col->pending;
    while (*at && (*at)->first_seq < p->first_seq)
        at = &(*at)->next;
    p->next = *at;
    *at = p;
}

static void request_fetch(announcer *a, collection_state *col);

uint64_t announcer_note_send(collection_state *col)
{
    pthread_mutex_lock(&col->lock);
    col->in_flight++;
    uint64_t ticket = col->tickets++;
    pthread_mutex_unlock(&col->lock);
    return ticket;
}

/* An unknown collection becomes known once no save that might hold a lower
 * seq than those queued is still out: announcing starts at the lowest one.
 * Caller holds col->lock. */
static void try_resolve(redis_storage *rs, collection_state *col, ready_list *ready)
{
    if (col->known || !col->resolving || col->awaiting > 0)
        return;
    col->resolving = false;
    col->known = true;
    col->announced = col->pending ? col->pending->first_seq - 1 : 0;
    drain(rs, col, ready);
}

/* One of the saves sent before the first reply of an unknown collection
 * came back. Caller holds col->lock. */
static void note_returned(collection_state *col, uint64_t ticket)
{
    col->in_flight--;
    if (!col->known && col->resolving && ticket < col->resolve_ticket)
        col->awaiting--;
}

static void finish_offer(redis_storage *rs, collection_state *col, ready_list *ready)
{
    bool gap = col->known && (col->pending != NULL || (col->fetch_behind && col->in_flight == 0));
    pthread_mutex_unlock(&col->lock);
    run_ready(ready);
    if (gap)
        request_fetch(rs->announcer, col);
}

void announcer_settle_send(redis_storage *rs, collection_state *col, uint64_t ticket)
{
    ready_list ready = {0};
    pthread_mutex_lock(&col->lock);
    note_returned(col, ticket);
    try_resolve(rs, col, &ready);
    finish_offer(rs, col, &ready);
}

void announcer_offer_local(redis_storage *rs, collection_state *col, const char *epoch,
                           uint64_t before, save_call *call, uint64_t first_seq,
                           uint64_t last_seq, uint64_t ticket)
{
    pending_save *p = malloc(sizeof *p);
    if (!p) {
        log_error("redis storage: out of memory ordering seqs %" PRIu64 "-%" PRIu64
                  "; they are not announced", first_seq, last_seq);
        announcer_settle_send(rs, col, ticket);
        save_call_complete(call);
        return;
    }
    *p = (pending_save){.call = call, .first_seq = first_seq, .last_seq = last_seq};
    ready_list ready = {0};
    pthread_mutex_lock(&col->lock);
    note_returned(col, ticket);
    if (!col->known && !col->resolving) {
        col->resolving = true;
        col->resolve_ticket = col->tickets;
        col->awaiting = col->in_flight;   /* all sent before this reply came */
        snprintf(col->epoch, sizeof col->epoch, "%s", epoch);
    } else if (col->known && strcmp(col->epoch, epoch) != 0) {
        reset_sequence(rs, col, epoch, before, &ready);
    }
    insert_pending(col, p);
    if (col->known)
        drain(rs, col, &ready);
    else
        try_resolve(rs, col, &ready);
    finish_offer(rs, col, &ready);
}

/* Announces fetched events and queued local saves in seq order. Seqs
 * missing from both (trimmed from the stream before this broker announced
 * them, or skipped on purpose far behind) are announced past, unless local
 * saves are still in flight: one of them may hold the missing seqs, so the
 * rest waits for their replies and a fetch after them (fetch_behind).
 * Caller holds col->lock. */
static void announce_fetched(redis_storage *rs, collection_state *col, const sync_event *events,
                             size_t count, ready_list *ready)
{
    size_t i = 0;
    col->fetch_behind = false;
    for (;;) {
        drain(rs, col, ready);
        while (i < count && events[i].seq <= col->announced)
            i++;
        if (i < count && events[i].seq == col->announced + 1) {
            size_t end = i + 1;
            while (end < count && events[end].seq == events[end - 1].seq + 1)
                end++;
            announce(rs, col, events + i, end - i);
            col->announced = events[end - 1].seq;
            i = end;
            continue;
        }
        uint64_t next = i < count ? events[i].seq : UINT64_MAX;
        if (col->pending && col->pending->first_seq < next)
            next = col->pending->first_seq;
        if (next == UINT64_MAX)
            return;
        if (col->in_flight > 0) {
            col->fetch_behind = true;
            return;
        }
        atomic_fetch_add(&rs->gaps_skipped, 1);   /* readers see the jump and catch up */
        col->announced = next - 1;
    }
}

/* Fetched events (seq order) and the head they were read at. */
static void offer_fetched(redis_storage *rs, collection_state *col, const sync_head *head,
                          const sync_event *events, size_t count)
{
    ready_list ready = {0};
    pthread_mutex_lock(&col->lock);
    if (!col->known && (col->resolving || col->in_flight > 0)) {
        /* Local saves still out may hold seqs the head already counts:
         * they settle where announcing starts. */
        pthread_mutex_unlock(&col->lock);
        return;
    }
    if (!col->known || strcmp(col->epoch, head->epoch) != 0)
        reset_sequence(rs, col, head->epoch, count ? events[0].seq - 1 : head->last_seq, &ready);
    announce_fetched(rs, col, events, count, &ready);
    pthread_mutex_unlock(&col->lock);
    run_ready(&ready);
}

void announcer_abandon_thread(redis_storage *rs, redis_thread *t)
{
    ready_list ready = {0};
    pthread_rwlock_rdlock(&rs->table_lock);
    for (collection_state *col = rs->collections; col; col = col->hh.next) {
        pthread_mutex_lock(&col->lock);
        for (pending_save **at = &col->pending; *at;) {
            pending_save *p = *at;
            if (save_call_owner(p->call) != t) {
                at = &p->next;
                continue;
            }
            *at = p->next;
            p->next = ready.head;
            ready.head = p;
        }
        note_gap_state(col, false);
        pthread_mutex_unlock(&col->lock);
    }
    pthread_rwlock_unlock(&rs->table_lock);
    run_ready(&ready);
}

/* ---- fetching (announcer thread) ------------------------------------------------- */

static void schedule_fetch(announcer *a, collection_state *col, unsigned delay_ms);

/* A fetch failed (Redis away or refusing): a gap open longer than
 * REDIS_GAP_GIVE_UP_MS is announced past, so that the saves behind it
 * complete; readers see the jump and catch up from storage later. While
 * fetches work, a gap only waits for replies still on their way. */
static void give_up_gap(redis_storage *rs, collection_state *col)
{
    uint64_t now = redis_now_ms();
    ready_list ready = {0};
    pthread_mutex_lock(&col->lock);
    if (col->pending && now - col->gap_since_ms >= REDIS_GAP_GIVE_UP_MS) {
        log_warn("redis storage: %s/%s: seqs %" PRIu64 "-%" PRIu64 " could not be fetched; "
                 "announcing past them", col->tenant, col->collection, col->announced + 1,
                 col->pending->first_seq - 1);
        atomic_fetch_add(&rs->gaps_skipped, 1);
        col->announced = col->pending->first_seq - 1;
        drain(rs, col, &ready);
    }
    pthread_mutex_unlock(&col->lock);
    run_ready(&ready);
}

static void on_fetch_reply(void *arg, redisReply *reply)
{
    collection_state *col = arg;
    redis_storage *rs = col->rs;
    announcer *a = rs->announcer;
    col->fetching = false;
    if (a->stopping)
        return;
    sync_head head;
    bool complete = false;
    sync_event *events = NULL;
    size_t count = 0;
    if (!reply || reply->type == REDIS_REPLY_ERROR ||
        !redis_parse_read_reply(reply, rs->node, &head, &complete, &events, &count)) {
        redis_note_error(rs, a->commands, reply, "fetch");
        give_up_gap(rs, col);
        schedule_fetch(a, col, FETCH_RETRY_MS);
        return;
    }
    atomic_fetch_add(&rs->fetches, 1);
    offer_fetched(rs, col, &head, events, count);
    free(events);
    pthread_mutex_lock(&col->lock);
    bool behind = col->announced < head.last_seq || col->pending != NULL;
    pthread_mutex_unlock(&col->lock);
    if (col->fetch_again || (behind && !complete)) {
        col->fetch_again = false;
        schedule_fetch(a, col, 0);
    }
}

/* Whether there is anything to fetch, and from where. */
static bool plan_fetch(collection_state *col, uint64_t *after)
{
    pthread_mutex_lock(&col->lock);
    bool known = col->known;
    uint64_t announced = col->announced;
    bool gap = col->pending != NULL;
    bool same_epoch = known && strcmp(col->epoch, col->notified_epoch) == 0;
    pthread_mutex_unlock(&col->lock);
    if (!known) {
        *after = UINT64_MAX;   /* learn the head; nothing older is announced */
        return true;
    }
    bool noticed = col->notified_epoch[0] && (!same_epoch || col->notified_last > announced);
    if (!gap && !noticed && !col->resync)
        return false;
    *after = announced;
    if (same_epoch && col->notified_last > announced + JUMP_BEHIND)
        *after = col->notified_last - FETCH_PAGE;
    return true;
}

static void start_fetch(announcer *a, collection_state *col)
{
    uint64_t after;
    if (col->fetching || !plan_fetch(col, &after))
        return;
    col->resync = false;
    if (!redis_send_read(a->rs, a->commands, col, after, FETCH_PAGE, NULL, on_fetch_reply, col)) {
        give_up_gap(a->rs, col);
        schedule_fetch(a, col, FETCH_RETRY_MS);
        return;
    }
    col->fetching = true;
}

static void on_fetch_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    collection_state *col = arg;
    start_fetch(col->rs->announcer, col);
}

static void schedule_fetch(announcer *a, collection_state *col, unsigned delay_ms)
{
    if (a->stopping)
        return;
    if (col->fetching) {
        col->fetch_again = true;
        return;
    }
    if (!col->fetch_timer && !(col->fetch_timer = evtimer_new(a->base, on_fetch_timer, col))) {
        log_error("redis storage: out of memory scheduling a fetch");
        return;
    }
    if (evtimer_pending(col->fetch_timer, NULL) && delay_ms > 0)
        return;
    struct timeval tv = {.tv_sec = delay_ms / 1000, .tv_usec = (delay_ms % 1000) * 1000};
    evtimer_add(col->fetch_timer, &tv);
}

static void on_fetch_request(void *arg)
{
    collection_state *col = arg;
    schedule_fetch(col->rs->announcer, col, REDIS_GAP_WAIT_MS);
}

static void request_fetch(announcer *a, collection_state *col)
{
    if (!loop_mailbox_post(a->mailbox, on_fetch_request, col))
        log_error("redis storage: out of memory requesting a fetch");
}

/* ---- pub/sub (announcer thread) ------------------------------------------------ */

/* "<epoch> <last> <node>" */
static void on_notice(announcer *a, collection_state *col, const char *text)
{
    char epoch[SYNC_EPOCH_MAX], node[NODE_ID_LEN + 1];
    uint64_t last;
    if (sscanf(text, "%39s %" SCNu64 " %16s", epoch, &last, node) != 3)
        return;
    if (strcmp(node, a->rs->node) == 0)
        return;   /* our own save: its reply announces it (see announcer_resync_all) */
    snprintf(col->notified_epoch, sizeof col->notified_epoch, "%s", epoch);
    col->notified_last = last;
    schedule_fetch(a, col, 0);
}

static void on_pubsub(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    redisReply *r = reply;
    collection_state *col = privdata;
    announcer *a = col->rs->announcer;
    if (!r || a->stopping || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = r->element[0]->str;
    if (strcmp(kind, "message") == 0 && r->element[2]->type == REDIS_REPLY_STRING) {
        on_notice(a, col, r->element[2]->str);
    } else if (strcmp(kind, "subscribe") == 0) {
        col->resync = true;   /* subscribed now: whatever came before is fetched */
        schedule_fetch(a, col, 0);
    }
}

static void pubsub_command(announcer *a, collection_state *col, const char *command)
{
    const char *argv[] = {command, col->keys.channel};
    size_t len[] = {strlen(command), col->keys.channel_len};
    redis_link_subscribe_command(a->pubsub, on_pubsub, col, 2, argv, len);
}

static unsigned watchers_of(collection_state *col)
{
    pthread_mutex_lock(&col->lock);
    unsigned n = col->watchers;
    pthread_mutex_unlock(&col->lock);
    return n;
}

/* Subscribed exactly while watched (requests may arrive out of date). */
static void reconcile_subscription(void *arg)
{
    collection_state *col = arg;
    announcer *a = col->rs->announcer;
    if (a->stopping || !redis_link_is_up(a->pubsub))
        return;   /* the link's coming up subscribes every watched collection */
    bool want = watchers_of(col) > 0;
    if (want && !col->subscribed)
        pubsub_command(a, col, "SUBSCRIBE");
    else if (!want && col->subscribed)
        pubsub_command(a, col, "UNSUBSCRIBE");
    col->subscribed = want;
}

void announcer_watch(redis_storage *rs, collection_state *col, bool watching)
{
    pthread_mutex_lock(&col->lock);
    bool changed;
    if (watching) {
        changed = col->watchers++ == 0;
    } else {
        changed = col->watchers == 1;
        if (col->watchers > 0)
            col->watchers--;
    }
    if (changed) {
        if (watching)
            atomic_fetch_add(&rs->watched, 1);
        else
            atomic_fetch_sub(&rs->watched, 1);
        if (!loop_mailbox_post(rs->announcer->mailbox, reconcile_subscription, col))
            log_error("redis storage: out of memory (un)subscribing %s/%s", col->tenant,
                      col->collection);
    }
    pthread_mutex_unlock(&col->lock);
}

static void resync_all_on_thread(void *arg)
{
    announcer *a = arg;
    if (a->stopping)
        return;
    redis_storage *rs = a->rs;
    pthread_rwlock_rdlock(&rs->table_lock);
    for (collection_state *col = rs->collections; col; col = col->hh.next) {
        if (col->subscribed) {
            col->resync = true;
            schedule_fetch(a, col, 0);
        }
    }
    pthread_rwlock_unlock(&rs->table_lock);
}

void announcer_resync_all(redis_storage *rs)
{
    if (!loop_mailbox_post(rs->announcer->mailbox, resync_all_on_thread, rs->announcer))
        log_error("redis storage: out of memory requesting a resync");
}

static void on_pubsub_state(void *arg, redis_link *link, bool up)
{
    (void)link;
    announcer *a = arg;
    redis_storage *rs = a->rs;
    atomic_store(&a->pubsub_up, up);
    pthread_rwlock_rdlock(&rs->table_lock);
    for (collection_state *col = rs->collections; col; col = col->hh.next) {
        col->subscribed = false;   /* a new connection has no subscriptions */
        if (up)
            reconcile_subscription(col);
    }
    pthread_rwlock_unlock(&rs->table_lock);
}

static void on_commands_state(void *arg, redis_link *link, bool up)
{
    announcer *a = arg;
    atomic_store(&a->commands_up, up);
    if (up)
        redis_load_scripts(a->rs, link);
}

/* ---- the thread ------------------------------------------------------------------ */

static bool announcer_open(announcer *a)
{
    a->base = event_base_new();
    if (!a->base)
        return false;
    a->mailbox = loop_mailbox_create(a->base);
    a->commands = redis_link_create(a->base, &a->rs->endpoint, "announcer", false,
                                    on_commands_state, a, &a->rs->link_stats);
    a->pubsub = redis_link_create(a->base, &a->rs->endpoint, "pub/sub", true, on_pubsub_state, a,
                                  &a->rs->link_stats);
    return a->mailbox && a->commands && a->pubsub;
}

static void announcer_close(announcer *a)
{
    a->stopping = true;
    redis_link_free(a->pubsub);
    redis_link_free(a->commands);
    a->pubsub = a->commands = NULL;
    pthread_rwlock_rdlock(&a->rs->table_lock);
    for (collection_state *col = a->rs->collections; col; col = col->hh.next) {
        if (col->fetch_timer)
            event_free(col->fetch_timer);
        col->fetch_timer = NULL;
    }
    pthread_rwlock_unlock(&a->rs->table_lock);
}

static void set_start_state(announcer *a, int state)
{
    pthread_mutex_lock(&a->start_lock);
    a->start_state = state;
    pthread_cond_signal(&a->started_cond);
    pthread_mutex_unlock(&a->start_lock);
}

static void *announcer_main(void *arg)
{
    announcer *a = arg;
    if (!announcer_open(a)) {
        announcer_close(a);
        set_start_state(a, -1);
        return NULL;
    }
    set_start_state(a, 1);
    event_base_loop(a->base, EVLOOP_NO_EXIT_ON_EMPTY);
    return NULL;
}

static void announcer_free(announcer *a)
{
    loop_mailbox_free(a->mailbox);   /* requests still queued see `stopping` */
    if (a->base)
        event_base_free(a->base);
    pthread_cond_destroy(&a->started_cond);
    pthread_mutex_destroy(&a->start_lock);
    free(a);
}

announcer *announcer_start(redis_storage *rs)
{
    announcer *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->rs = rs;
    pthread_mutex_init(&a->start_lock, NULL);
    pthread_cond_init(&a->started_cond, NULL);
    if (pthread_create(&a->thread, NULL, announcer_main, a) != 0) {
        announcer_free(a);
        return NULL;
    }
    pthread_mutex_lock(&a->start_lock);
    while (a->start_state == 0)
        pthread_cond_wait(&a->started_cond, &a->start_lock);
    int state = a->start_state;
    pthread_mutex_unlock(&a->start_lock);
    if (state < 0) {
        pthread_join(a->thread, NULL);
        announcer_free(a);
        return NULL;
    }
    return a;
}

static void stop_on_thread(void *arg)
{
    announcer *a = arg;
    announcer_close(a);
    event_base_loopbreak(a->base);
}

void announcer_stop(announcer *a)
{
    if (!a)
        return;
    while (!loop_mailbox_post(a->mailbox, stop_on_thread, a))
        ;   /* out of memory: nothing else would stop the thread */
    pthread_join(a->thread, NULL);
    announcer_free(a);
}

bool announcer_available(const announcer *a)
{
    return atomic_load(&a->commands_up) && atomic_load(&a->pubsub_up);
}
