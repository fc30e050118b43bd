/* redis_storage_internal: what redis_storage.c (the calls) and
 * redis_announcer.c (ordering, announcements, pub/sub) share. */
#ifndef NEBULA_REDIS_STORAGE_INTERNAL_H
#define NEBULA_REDIS_STORAGE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <uthash.h>

#include "loop_mailbox.h"
#include "redis_keys.h"
#include "redis_link.h"
#include "redis_storage.h"

#define NODE_ID_LEN 16              /* hex digits of a broker's node id */

typedef struct redis_storage redis_storage;
typedef struct announcer announcer;

/* A thread that called thread_start: its loop and connection. */
typedef struct redis_thread {
    redis_storage *rs;
    struct event_base *base;
    redis_link *link;
    loop_mailbox *mailbox;      /* completions handed over by other threads */
    int index;
    struct redis_thread *next;
} redis_thread;

/* A save whose reply came; it completes once its accepted events (seqs
 * first_seq..last_seq, contiguous) have been announced. */
typedef struct save_call save_call;
void save_call_complete(save_call *call);
redis_thread *save_call_owner(const save_call *call);
void save_call_accepted(const save_call *call, const sync_event **events, size_t *count);

typedef struct pending_save {
    save_call *call;
    uint64_t first_seq, last_seq;
    struct pending_save *next;  /* sorted by first_seq */
} pending_save;

/* Everything this broker knows of one collection. Created on first use and
 * kept until the storage is destroyed. */
typedef struct collection_state {
    UT_hash_handle hh;
    redis_storage *rs;
    char *key;                  /* tenant NUL collection */
    size_t key_len;
    const char *tenant, *collection;
    redis_keys keys;
    atomic_bool registered;     /* in the collections set (retention) */

    pthread_mutex_t lock;       /* guards the fields below */
    bool known;                 /* epoch and announced are set */
    char epoch[SYNC_EPOCH_MAX];
    uint64_t announced;         /* every seq up to this one was announced (or skipped) */
    pending_save *pending;      /* local saves waiting for a gap to close */
    uint64_t gap_since_ms;      /* when the oldest gap opened (0: none) */
    bool fetch_behind;          /* a fetch stopped at a gap local saves in flight may fill */
    unsigned watchers;
    /* Local saves sent and not yet offered, numbered by tickets. Until the
     * collection is known, the first reply cannot tell whether saves still
     * in flight hold lower seqs: the collection becomes known once every
     * save sent before that reply has come back (resolve_ticket). */
    unsigned in_flight;
    uint64_t tickets;
    bool resolving;
    uint64_t resolve_ticket;
    unsigned awaiting;

    /* Announcer thread only. */
    bool subscribed;
    bool fetching, fetch_again;
    bool resync;                /* fetch up to the head even without a notice */
    uint64_t notified_last;     /* latest pub/sub notice */
    char notified_epoch[SYNC_EPOCH_MAX];
    struct event *fetch_timer;
} collection_state;

struct redis_storage {
    redis_endpoint endpoint;
    char *prefix;
    uint64_t max_log;
    char node[NODE_ID_LEN + 1];
    atomic_ulong epoch_counter;

    pthread_rwlock_t listener_lock;
    sync_listener_fn listener;
    void *listener_data;

    pthread_rwlock_t table_lock;
    collection_state *collections;
    char *registry_key;         /* <prefix>collections */

    pthread_mutex_t threads_lock;
    redis_thread *threads;
    int thread_count;           /* ever started: names the threads' links */
    atomic_int threads_running;
    atomic_int threads_up;      /* with their connection up */

    announcer *announcer;

    redis_link_stats link_stats;
    atomic_ulong command_errors;
    atomic_ulong fetches;
    atomic_ulong gaps_skipped;
    atomic_ulong watched;
};

uint64_t redis_now_ms(void);

/* A fresh epoch for collections that have none (node id + counter). */
void redis_new_epoch(redis_storage *rs, char out[SYNC_EPOCH_MAX]);

/* The calling thread's record, or NULL (no thread_start on it). */
redis_thread *redis_current_thread(redis_storage *rs);

/* Sends the read script (head, then events after after_seq; exclude_client
 * NULL: every client's); false when the link refused it. */
bool redis_send_read(redis_storage *rs, redis_link *link, collection_state *col,
                     uint64_t after_seq, size_t limit, const char *exclude_client,
                     redis_reply_fn reply, void *arg);

collection_state *redis_collection(redis_storage *rs, const char *tenant, const char *collection);

/* Loads every script on a link that just came up. */
void redis_load_scripts(redis_storage *rs, redis_link *link);

/* Reply of the read script -> head and events (pointing into the reply).
 * Events another broker stored (node other than own_node) get origin 0. */
bool redis_parse_read_reply(const redisReply *r, const char *own_node, sync_head *head,
                            bool *complete, sync_event **events, size_t *count);

/* Counts an error reply and, for NOSCRIPT, reloads the scripts. */
void redis_note_error(redis_storage *rs, redis_link *link, const redisReply *r, const char *what);

/* ---- announcer (redis_announcer.c) ---------------------------------------- */

announcer *announcer_start(redis_storage *rs);
void announcer_stop(announcer *a);
bool announcer_available(const announcer *a);

/* A local save is about to be sent: its ticket. */
uint64_t announcer_note_send(collection_state *col);

/* A local save's reply with accepted events: announces or queues it (see
 * redis_storage.h). */
void announcer_offer_local(redis_storage *rs, collection_state *col, const char *epoch,
                           uint64_t before, save_call *call, uint64_t first_seq,
                           uint64_t last_seq, uint64_t ticket);

/* A local save ended without accepted events (failed, or nothing new). */
void announcer_settle_send(redis_storage *rs, collection_state *col, uint64_t ticket);

/* Completes, on the calling thread, every pending save owned by t (the
 * thread is stopping). */
void announcer_abandon_thread(redis_storage *rs, redis_thread *t);

void announcer_watch(redis_storage *rs, collection_state *col, bool watching);

/* A connection of this broker came back: saves whose answers it lost may
 * have been stored unannounced, so every watched collection is fetched up
 * to its head. (Pub/sub notices of our own saves are otherwise ignored:
 * the replies announce them.) */
void announcer_resync_all(redis_storage *rs);

#endif
