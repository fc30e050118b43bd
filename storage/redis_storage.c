/* redis_storage: the calls of the Redis storage (see redis_storage.h):
 * per-thread connections, the scripts' arguments and replies, retention. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "redis_storage.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>

#include "log.h"
#include "redis_scripts.h"
#include "redis_storage_internal.h"

#define FETCH_NUMBER_LEN 24         /* a uint64 in decimal, NUL included */
#define TRIM_ENTRIES_PER_CALL 1000
#define REGISTRY_SCAN_COUNT 100
#define SAVE_FIELDS_PER_EVENT 9
#define HLC_DIGITS 20

/* ---- small helpers -------------------------------------------------------- */

uint64_t redis_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void redis_new_epoch(redis_storage *rs, char out[SYNC_EPOCH_MAX])
{
    unsigned long n = atomic_fetch_add(&rs->epoch_counter, 1);
    snprintf(out, SYNC_EPOCH_MAX, "%s%016lx", rs->node, n);
}

/* Growing argv for one command; numbers are formatted into owned slots. */
typedef struct command_args {
    const char **argv;
    size_t *len;
    int count, capacity;
    char (*numbers)[FETCH_NUMBER_LEN];
    int number_count, number_capacity;
} command_args;

static bool args_reserve(command_args *a, int argc, int numbers)
{
    a->argv = malloc((size_t)argc * sizeof *a->argv);
    a->len = malloc((size_t)argc * sizeof *a->len);
    a->numbers = malloc((size_t)(numbers ? numbers : 1) * sizeof *a->numbers);
    a->capacity = argc;
    a->number_capacity = numbers;
    return a->argv && a->len && a->numbers;
}

static void args_release(command_args *a)
{
    free(a->argv);
    free(a->len);
    free(a->numbers);
}

static void args_add(command_args *a, const char *s, size_t len)
{
    a->argv[a->count] = s;
    a->len[a->count++] = len;
}

static void args_add_str(command_args *a, const char *s)
{
    args_add(a, s, strlen(s));
}

static void args_add_u64(command_args *a, uint64_t v)
{
    char *slot = a->numbers[a->number_count++];
    args_add(a, slot, (size_t)snprintf(slot, FETCH_NUMBER_LEN, "%" PRIu64, v));
}

static void args_add_i64(command_args *a, int64_t v)
{
    char *slot = a->numbers[a->number_count++];
    args_add(a, slot, (size_t)snprintf(slot, FETCH_NUMBER_LEN, "%" PRId64, v));
}

/* Zero-padded so that the save script compares hlcs as strings, exactly. */
static void args_add_hlc(command_args *a, uint64_t v)
{
    char *slot = a->numbers[a->number_count++];
    args_add(a, slot, (size_t)snprintf(slot, FETCH_NUMBER_LEN, "%0*" PRIu64, HLC_DIGITS, v));
}

static void args_start_script(command_args *a, redis_script script, int key_count)
{
    args_add_str(a, "EVALSHA");
    args_add_str(a, redis_script_sha(script));
    args_add_u64(a, (uint64_t)key_count);
}

/* ---- threads ------------------------------------------------------------------ */

typedef struct thread_binding {
    redis_storage *rs;
    redis_thread *thread;
    struct thread_binding *next;
} thread_binding;

static __thread thread_binding *bindings;

redis_thread *redis_current_thread(redis_storage *rs)
{
    for (thread_binding *b = bindings; b; b = b->next)
        if (b->rs == rs)
            return b->thread;
    return NULL;
}

static void on_thread_link_state(void *arg, redis_link *link, bool up)
{
    redis_storage *rs = arg;
    atomic_fetch_add(&rs->threads_up, up ? 1 : -1);
    if (up) {
        redis_load_scripts(rs, link);
        announcer_resync_all(rs);
    }
}

static int redis_thread_start(void *ctx, void *event_base)
{
    redis_storage *rs = ctx;
    if (redis_current_thread(rs))
        return SYNC_STORAGE_INVALID;
    redis_thread *t = calloc(1, sizeof *t);
    thread_binding *b = calloc(1, sizeof *b);
    if (!t || !b)
        goto fail;
    t->rs = rs;
    t->base = event_base;
    pthread_mutex_lock(&rs->threads_lock);
    t->index = rs->thread_count++;
    pthread_mutex_unlock(&rs->threads_lock);
    char name[32];
    snprintf(name, sizeof name, "thread %d", t->index);
    t->mailbox = loop_mailbox_create(event_base);
    t->link = redis_link_create(event_base, &rs->endpoint, name, false, on_thread_link_state, rs,
                                &rs->link_stats);
    if (!t->mailbox || !t->link)
        goto fail;
    pthread_mutex_lock(&rs->threads_lock);
    t->next = rs->threads;
    rs->threads = t;
    pthread_mutex_unlock(&rs->threads_lock);
    *b = (thread_binding){.rs = rs, .thread = t, .next = bindings};
    bindings = b;
    atomic_fetch_add(&rs->threads_running, 1);
    return SYNC_STORAGE_OK;
fail:
    if (t) {
        redis_link_free(t->link);
        loop_mailbox_free(t->mailbox);
    }
    free(t);
    free(b);
    return SYNC_STORAGE_UNAVAILABLE;
}

static void unbind_current(redis_storage *rs)
{
    for (thread_binding **p = &bindings; *p; p = &(*p)->next) {
        if ((*p)->rs == rs) {
            thread_binding *b = *p;
            *p = b->next;
            free(b);
            return;
        }
    }
}

static void forget_thread(redis_storage *rs, redis_thread *t)
{
    pthread_mutex_lock(&rs->threads_lock);
    for (redis_thread **p = &rs->threads; *p; p = &(*p)->next) {
        if (*p == t) {
            *p = t->next;
            break;
        }
    }
    pthread_mutex_unlock(&rs->threads_lock);
}

/* In-flight calls fail first (the link's callbacks run here), then saves
 * waiting for an announcement complete, then what other threads handed
 * over runs: all on this thread, before its loop goes away. */
static void redis_thread_stop(void *ctx)
{
    redis_storage *rs = ctx;
    redis_thread *t = redis_current_thread(rs);
    if (!t)
        return;
    if (redis_link_is_up(t->link))
        atomic_fetch_sub(&rs->threads_up, 1);
    atomic_fetch_sub(&rs->threads_running, 1);
    redis_link_free(t->link);
    t->link = NULL;
    announcer_abandon_thread(rs, t);
    loop_mailbox_free(t->mailbox);
    forget_thread(rs, t);
    unbind_current(rs);
    free(t);
}

/* The calling thread's connection, or NULL (not started, or down). */
static redis_link *usable_link(redis_storage *rs)
{
    redis_thread *t = redis_current_thread(rs);
    if (!t) {
        log_error("redis storage: called from a thread that did not call thread_start");
        return NULL;
    }
    return redis_link_is_up(t->link) ? t->link : NULL;
}

/* ---- scripts and errors ------------------------------------------------------------ */

static void on_script_loaded(void *arg, redisReply *reply)
{
    redis_storage *rs = arg;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        atomic_fetch_add(&rs->command_errors, 1);
        log_error("redis: SCRIPT LOAD failed: %s", reply->str);
    }
}

void redis_load_scripts(redis_storage *rs, redis_link *link)
{
    for (int s = 0; s < REDIS_SCRIPT_COUNT; s++) {
        const char *argv[] = {"SCRIPT", "LOAD", redis_script_source((redis_script)s)};
        size_t len[] = {6, 4, strlen(argv[2])};
        redis_link_send(link, on_script_loaded, rs, 3, argv, len);
    }
}

void redis_note_error(redis_storage *rs, redis_link *link, const redisReply *r, const char *what)
{
    if (r == NULL)
        return;   /* the link went down: counted and logged by the link */
    atomic_fetch_add(&rs->command_errors, 1);
    log_warn("redis: %s failed: %s", what, r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    if (link && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0)
        redis_load_scripts(rs, link);   /* SCRIPT FLUSH behind our back */
}

/* ---- collections -------------------------------------------------------------------- */

static collection_state *collection_new(redis_storage *rs, const char *key, size_t key_len)
{
    collection_state *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->key = malloc(key_len + 1);
    if (!c->key)
        goto fail;
    memcpy(c->key, key, key_len);
    c->key[key_len] = '\0';
    c->key_len = key_len;
    c->tenant = c->key;
    c->collection = c->key + strlen(c->key) + 1;
    if (!redis_keys_init(&c->keys, rs->prefix, c->tenant, c->collection))
        goto fail;
    c->rs = rs;
    pthread_mutex_init(&c->lock, NULL);
    return c;
fail:
    free(c->key);
    free(c);
    return NULL;
}

/* Its fetch timer went with the announcer's loop. */
static void collection_free(collection_state *c)
{
    pthread_mutex_destroy(&c->lock);
    redis_keys_release(&c->keys);
    free(c->key);
    free(c);
}

collection_state *redis_collection(redis_storage *rs, const char *tenant, const char *collection)
{
    size_t t = strlen(tenant), n = strlen(collection);
    char *key = malloc(t + 1 + n);
    if (!key)
        return NULL;
    memcpy(key, tenant, t + 1);
    memcpy(key + t + 1, collection, n);
    size_t key_len = t + 1 + n;
    collection_state *c = NULL;
    pthread_rwlock_rdlock(&rs->table_lock);
    HASH_FIND(hh, rs->collections, key, key_len, c);
    pthread_rwlock_unlock(&rs->table_lock);
    if (!c) {
        pthread_rwlock_wrlock(&rs->table_lock);
        HASH_FIND(hh, rs->collections, key, key_len, c);
        if (!c && (c = collection_new(rs, key, key_len)) != NULL)
            HASH_ADD_KEYPTR(hh, rs->collections, c->key, c->key_len, c);
        pthread_rwlock_unlock(&rs->table_lock);
    }
    free(key);
    return c;
}

static void on_registered(void *arg, redisReply *reply)
{
    collection_state *c = arg;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR)
        atomic_store(&c->registered, false);   /* try again with the next save */
}

/* Retention walks the collections set; each broker adds a collection the
 * first time it writes to it. */
static void register_collection(redis_storage *rs, redis_link *link, collection_state *c)
{
    if (atomic_exchange(&c->registered, true))
        return;
    const char *argv[] = {"SADD", rs->registry_key, c->keys.member};
    size_t len[] = {4, strlen(rs->registry_key), c->keys.member_len};
    if (!redis_link_send(link, on_registered, c, 3, argv, len))
        atomic_store(&c->registered, false);
}

/* ---- replies ----------------------------------------------------------------------------- */

static bool is_array(const redisReply *r, size_t min)
{
    return r && r->type == REDIS_REPLY_ARRAY && r->elements >= min;
}

static bool is_string(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static bool is_integer(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_INTEGER;
}

/* {epoch, first, last} at r->element[0..2]. */
static bool parse_head(const redisReply *r, sync_head *head)
{
    if (!is_array(r, 3) || !is_string(r->element[0]) || !is_integer(r->element[1]) ||
        !is_integer(r->element[2]) || r->element[0]->len >= SYNC_EPOCH_MAX)
        return false;
    memset(head, 0, sizeof *head);
    memcpy(head->epoch, r->element[0]->str, r->element[0]->len);
    head->first_seq = (uint64_t)r->element[1]->integer;
    head->last_seq = (uint64_t)r->element[2]->integer;
    return true;
}

/* One stream entry {"<seq>-0", {field, value, ...}} -> event. */
static bool parse_entry(const redisReply *e, const char *own_node, sync_event *ev)
{
    if (!is_array(e, 2) || !is_string(e->element[0]) || !is_array(e->element[1], 0))
        return false;
    memset(ev, 0, sizeof *ev);
    ev->seq = strtoull(e->element[0]->str, NULL, 10);
    const redisReply *f = e->element[1];
    bool own = false;
    for (size_t i = 0; i + 1 < f->elements; i += 2) {
        const redisReply *name = f->element[i], *value = f->element[i + 1];
        if (!is_string(name) || !is_string(value) || name->len != 1)
            return false;
        switch (name->str[0]) {
        case 'i': ev->id = value->str; break;
        case 'y': ev->type = (sync_event_type)atoi(value->str); break;
        case 'd': ev->document_id = value->str; break;
        case 'b':
            ev->data = value->len ? (const uint8_t *)value->str : NULL;
            ev->data_len = value->len;
            break;
        case 't': ev->timestamp_ms = strtoll(value->str, NULL, 10); break;
        case 'h': ev->hlc = strtoull(value->str, NULL, 10); break;
        case 'c': ev->client_id = value->str; break;
        case 's': ev->base_seq = strtoull(value->str, NULL, 10); break;
        case 'o': ev->origin = strtoull(value->str, NULL, 10); break;
        case 'n': own = strcmp(value->str, own_node) == 0; break;
        default: break;
        }
    }
    if (!own)
        ev->origin = 0;   /* another broker's session tag means nothing here */
    return ev->seq > 0 && ev->id && ev->document_id && ev->client_id;
}

bool redis_parse_read_reply(const redisReply *r, const char *own_node, sync_head *head,
                            bool *complete, sync_event **events, size_t *count)
{
    *events = NULL;
    *count = 0;
    if (!parse_head(r, head) || !is_integer(r->element[3]))
        return false;
    *complete = r->element[3]->integer == 1;
    size_t n = r->elements - 4;
    if (n == 0)
        return true;
    sync_event *out = malloc(n * sizeof *out);
    if (!out)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!parse_entry(r->element[4 + i], own_node, &out[i])) {
            free(out);
            return false;
        }
    }
    *events = out;
    *count = n;
    return true;
}

/* "<seq>,<hlc>,<deleted>,<#client>,<client><data>" -> document, whose
 * client id and data live in the returned allocation (NULL: malformed or
 * out of memory); the caller frees it. */
static char *parse_version(const char *v, size_t len, const char *document_id, sync_document *d)
{
    char *end;
    memset(d, 0, sizeof *d);
    d->document_id = document_id;
    d->seq = strtoull(v, &end, 10);
    if (*end != ',')
        return NULL;
    d->hlc = strtoull(end + 1, &end, 10);
    if (*end != ',' || (end[1] != '0' && end[1] != '1') || end[2] != ',')
        return NULL;
    d->deleted = end[1] == '1';
    size_t client_len = strtoull(end + 3, &end, 10);
    if (*end != ',' || (size_t)(end + 1 - v) + client_len > len)
        return NULL;
    const char *client = end + 1;
    size_t data_len = len - (size_t)(client + client_len - v);
    char *owned = malloc(client_len + data_len + 2);
    if (!owned)
        return NULL;
    memcpy(owned, client, client_len);
    owned[client_len] = '\0';
    memcpy(owned + client_len + 1, client + client_len, data_len);
    owned[client_len + 1 + data_len] = '\0';
    d->client_id = owned;
    d->data = data_len ? (const uint8_t *)owned + client_len + 1 : NULL;
    d->data_len = data_len;
    return owned;
}

/* ---- save ------------------------------------------------------------------------------- */

struct save_call {
    redis_storage *rs;
    redis_thread *owner;
    collection_state *col;
    sync_save_cb done;
    void *user_data;
    int status;
    size_t count;
    sync_event *events;         /* deep copies: the reply comes after the call returned */
    sync_save_result *results;
    size_t *sent;               /* indexes of the events the script was given */
    size_t sent_count;
    sync_event *accepted;       /* announced copies, seqs set */
    size_t accepted_count;
    char **winner_versions;     /* client ids and data of conflict winners */
    size_t winner_count;
    char *bytes;                /* strings and data of events */
    uint64_t ticket;            /* from announcer_note_send */
};

redis_thread *save_call_owner(const save_call *call)
{
    return call->owner;
}

void save_call_accepted(const save_call *call, const sync_event **events, size_t *count)
{
    *events = call->accepted;
    *count = call->accepted_count;
}

static void save_call_free(save_call *call)
{
    for (size_t i = 0; i < call->winner_count; i++)
        free(call->winner_versions[i]);
    free(call->winner_versions);
    free(call->accepted);
    free(call->sent);
    free(call->results);
    free(call->events);
    free(call->bytes);
    free(call);
}

void save_call_complete(save_call *call)
{
    if (call->done) {
        bool ok = call->status == SYNC_STORAGE_OK;
        call->done(call->user_data, call->status, ok ? call->results : NULL, ok ? call->count : 0);
    }
    save_call_free(call);
}

static size_t event_bytes(const sync_event *ev)
{
    size_t data = ev->type == SYNC_EVENT_DELETE ? 0 : ev->data_len;
    return strlen(ev->id) + strlen(ev->document_id) + strlen(ev->client_id ? ev->client_id : "") +
           4 + data;   /* four NULs: id, document, client, data */
}

static char *copy_into(char **cursor, const void *src, size_t len)
{
    char *start = *cursor;
    memcpy(start, src, len);
    start[len] = '\0';
    *cursor = start + len + 1;
    return start;
}

/* Copies the valid events (invalid ones are REJECTED now, not retryable). */
static bool save_call_copy_events(save_call *call, const sync_event *events, size_t count)
{
    size_t total = 0;
    for (size_t i = 0; i < count; i++) {
        const char *invalid = sync_event_invalid_reason(&events[i]);
        if (invalid) {
            call->results[i] = (sync_save_result){
                .status = SYNC_SAVE_REJECTED, .reason = invalid, .retryable = false};
            continue;
        }
        call->sent[call->sent_count++] = i;
        total += event_bytes(&events[i]);
    }
    call->bytes = malloc(total ? total : 1);
    if (!call->bytes)
        return false;
    char *cursor = call->bytes;
    for (size_t k = 0; k < call->sent_count; k++) {
        const sync_event *src = &events[call->sent[k]];
        sync_event *dst = &call->events[call->sent[k]];
        *dst = *src;
        const char *client = src->client_id ? src->client_id : "";
        size_t data_len = src->type == SYNC_EVENT_DELETE ? 0 : src->data_len;
        dst->id = copy_into(&cursor, src->id, strlen(src->id));
        dst->document_id = copy_into(&cursor, src->document_id, strlen(src->document_id));
        dst->client_id = copy_into(&cursor, client, strlen(client));
        dst->data = data_len ? (const uint8_t *)copy_into(&cursor, src->data, data_len) : NULL;
        dst->data_len = data_len;
    }
    return true;
}

static save_call *save_call_new(redis_storage *rs, redis_thread *owner, collection_state *col,
                                const sync_event *events, size_t count, sync_save_cb done,
                                void *user_data)
{
    save_call *call = calloc(1, sizeof *call);
    if (!call)
        return NULL;
    *call = (save_call){.rs = rs, .owner = owner, .col = col, .done = done,
                        .user_data = user_data, .count = count};
    call->events = calloc(count, sizeof *call->events);
    call->results = calloc(count, sizeof *call->results);
    call->sent = calloc(count, sizeof *call->sent);
    call->winner_versions = calloc(count, sizeof *call->winner_versions);
    if (!call->events || !call->results || !call->sent || !call->winner_versions ||
        !save_call_copy_events(call, events, count)) {
        save_call_free(call);
        return NULL;
    }
    return call;
}

static bool build_save_args(command_args *a, redis_storage *rs, const save_call *call,
                            sync_conflict_strategy strategy, const char *epoch)
{
    int argc = 3 + 4 + 6 + SAVE_FIELDS_PER_EVENT * (int)call->sent_count;
    if (!args_reserve(a, argc, 4 + 5 * (int)call->sent_count))
        return false;
    const redis_keys *k = &call->col->keys;
    args_start_script(a, REDIS_SCRIPT_SAVE, 4);
    args_add(a, k->log, k->log_len);
    args_add(a, k->docs, k->docs_len);
    args_add(a, k->ids, k->ids_len);
    args_add(a, k->meta, k->meta_len);
    args_add_u64(a, (uint64_t)strategy);
    args_add_str(a, rs->node);
    args_add_str(a, epoch);
    args_add(a, k->channel, k->channel_len);
    args_add_u64(a, call->sent_count);
    args_add_u64(a, rs->max_log);
    for (size_t i = 0; i < call->sent_count; i++) {
        const sync_event *ev = &call->events[call->sent[i]];
        args_add_str(a, ev->id);
        args_add_u64(a, (uint64_t)ev->type);
        args_add_str(a, ev->document_id);
        args_add(a, ev->data ? (const char *)ev->data : "", ev->data_len);
        args_add_i64(a, ev->timestamp_ms);
        args_add_hlc(a, ev->hlc);
        args_add_str(a, ev->client_id);
        args_add_u64(a, ev->base_seq);
        args_add_u64(a, ev->origin);
    }
    return true;
}

static void fail_unsent(save_call *call, int status)
{
    call->status = status;
    save_call_complete(call);
}

/* code, then seq or version, for event index i; false for a malformed
 * reply. */
static bool apply_result(save_call *call, size_t i, const redisReply *code_reply,
                         const redisReply *v, uint64_t *next_seq)
{
    sync_save_result *res = &call->results[i];
    const sync_event *ev = &call->events[i];
    if (!is_integer(code_reply))
        return false;
    long long code = code_reply->integer;
    if (code == SYNC_SAVE_ACCEPTED || code == SYNC_SAVE_DUPLICATE) {
        if (!is_integer(v))
            return false;
        res->status = (sync_save_status)code;
        res->seq = (uint64_t)v->integer;
        if (code == SYNC_SAVE_ACCEPTED) {
            if (res->seq != *next_seq)
                return false;
            (*next_seq)++;
            sync_event *a = &call->accepted[call->accepted_count++];
            *a = *ev;
            a->seq = res->seq;
        }
        return true;
    }
    if (code != SYNC_SAVE_CONFLICT || !is_string(v))
        return false;
    res->status = SYNC_SAVE_CONFLICT;
    if (v->len == 0) {   /* never-seen document (server-wins with a base seq) */
        res->winner = (sync_document){.document_id = ev->document_id, .client_id = "",
                                      .deleted = true};
        return true;
    }
    char *owned = parse_version(v->str, v->len, ev->document_id, &res->winner);
    if (!owned)
        return false;
    call->winner_versions[call->winner_count++] = owned;
    return true;
}

static bool apply_save_reply(save_call *call, const redisReply *r, char *epoch, uint64_t *before)
{
    if (!is_array(r, 2 + 2 * call->sent_count) || !is_string(r->element[0]) ||
        !is_integer(r->element[1]) || r->element[0]->len >= SYNC_EPOCH_MAX)
        return false;
    memcpy(epoch, r->element[0]->str, r->element[0]->len + 1);
    *before = (uint64_t)r->element[1]->integer;
    call->accepted = malloc(call->sent_count * sizeof *call->accepted);
    if (!call->accepted)
        return false;
    uint64_t next_seq = *before + 1;
    for (size_t k = 0; k < call->sent_count; k++)
        if (!apply_result(call, call->sent[k], r->element[2 + 2 * k], r->element[3 + 2 * k],
                          &next_seq))
            return false;
    return true;
}

static void on_save_reply(void *arg, redisReply *reply)
{
    save_call *call = arg;
    redis_thread *t = call->owner;
    char epoch[SYNC_EPOCH_MAX];
    uint64_t before = 0;
    if (reply == NULL || reply->type == REDIS_REPLY_ERROR ||
        !apply_save_reply(call, reply, epoch, &before)) {
        if (reply)
            redis_note_error(call->rs, t->link, reply, "save");
        announcer_settle_send(call->rs, call->col, call->ticket);
        fail_unsent(call, SYNC_STORAGE_UNAVAILABLE);
        return;
    }
    if (call->accepted_count == 0) {
        announcer_settle_send(call->rs, call->col, call->ticket);
        save_call_complete(call);
        return;
    }
    announcer_offer_local(call->rs, call->col, epoch, before, call, before + 1,
                          before + call->accepted_count, call->ticket);
}

static void redis_save_events(void *ctx, const char *tenant, const char *collection,
                              sync_conflict_strategy strategy, const sync_event *events,
                              size_t count, sync_save_cb done, void *user_data)
{
    redis_storage *rs = ctx;
    if (!tenant || !collection || !sync_conflict_strategy_is_known(strategy) || (!events && count > 0)) {
        if (done)
            done(user_data, SYNC_STORAGE_INVALID, NULL, 0);
        return;
    }
    if (count == 0) {
        if (done)
            done(user_data, SYNC_STORAGE_OK, NULL, 0);
        return;
    }
    redis_link *link = usable_link(rs);
    collection_state *col = link ? redis_collection(rs, tenant, collection) : NULL;
    save_call *call = col ? save_call_new(rs, redis_current_thread(rs), col, events, count, done,
                                          user_data)
                          : NULL;
    if (!call) {
        if (done)
            done(user_data, SYNC_STORAGE_UNAVAILABLE, NULL, 0);
        return;
    }
    if (call->sent_count == 0) {
        save_call_complete(call);
        return;
    }
    register_collection(rs, link, col);
    char epoch[SYNC_EPOCH_MAX];
    redis_new_epoch(rs, epoch);
    command_args a = {0};
    bool sent = false;
    if (build_save_args(&a, rs, call, strategy, epoch)) {
        call->ticket = announcer_note_send(col);
        sent = redis_link_send(link, on_save_reply, call, a.count, a.argv, a.len);
        if (!sent)
            announcer_settle_send(rs, col, call->ticket);
    }
    args_release(&a);
    if (!sent)
        fail_unsent(call, SYNC_STORAGE_UNAVAILABLE);
}

/* ---- reads -------------------------------------------------------------------------------- */

typedef struct read_call {
    redis_storage *rs;
    sync_events_cb done;
    void *user_data;
} read_call;

static void on_read_reply(void *arg, redisReply *reply)
{
    read_call *call = arg;
    sync_head head;
    bool complete = false;
    sync_event *events = NULL;
    size_t count = 0;
    if (reply && reply->type != REDIS_REPLY_ERROR &&
        redis_parse_read_reply(reply, call->rs->node, &head, &complete, &events, &count)) {
        call->done(call->user_data, SYNC_STORAGE_OK, events, count, &head, complete);
    } else {
        redis_note_error(call->rs, NULL, reply, "read");
        call->done(call->user_data, SYNC_STORAGE_UNAVAILABLE, NULL, 0, NULL, false);
    }
    free(events);
    free(call);
}

/* The read script: head, then events after after_seq (exclude_client NULL:
 * every client's). */
bool redis_send_read(redis_storage *rs, redis_link *link, collection_state *col,
                     uint64_t after_seq, size_t limit, const char *exclude_client,
                      redis_reply_fn reply, void *arg)
{
    char epoch[SYNC_EPOCH_MAX];
    redis_new_epoch(rs, epoch);
    command_args a = {0};
    bool ok = args_reserve(&a, 10, 4);
    if (ok) {
        args_start_script(&a, REDIS_SCRIPT_READ, 2);
        args_add(&a, col->keys.log, col->keys.log_len);
        args_add(&a, col->keys.meta, col->keys.meta_len);
        args_add_str(&a, epoch);
        args_add_u64(&a, after_seq);
        args_add_u64(&a, (uint64_t)limit);
        args_add_str(&a, exclude_client ? "1" : "0");
        args_add_str(&a, exclude_client ? exclude_client : "");
        ok = redis_link_send(link, reply, arg, a.count, a.argv, a.len);
    }
    args_release(&a);
    return ok;
}

static void start_read(redis_storage *rs, const char *tenant, const char *collection,
                       uint64_t after_seq, size_t limit, const char *exclude_client,
                       sync_events_cb done, void *user_data)
{
    redis_link *link = usable_link(rs);
    collection_state *col = link ? redis_collection(rs, tenant, collection) : NULL;
    read_call *call = col ? malloc(sizeof *call) : NULL;
    if (call) {
        *call = (read_call){.rs = rs, .done = done, .user_data = user_data};
        if (redis_send_read(rs, link, col, after_seq, limit, exclude_client, on_read_reply, call))
            return;
        free(call);
    }
    done(user_data, SYNC_STORAGE_UNAVAILABLE, NULL, 0, NULL, false);
}

static void redis_events_after(void *ctx, const char *tenant, const char *collection,
                               uint64_t after_seq, size_t limit, sync_events_cb done,
                               void *user_data)
{
    if (!tenant || !collection) {
        done(user_data, SYNC_STORAGE_INVALID, NULL, 0, NULL, false);
        return;
    }
    start_read(ctx, tenant, collection, after_seq, limit, NULL, done, user_data);
}

/* events_for_client answers once per collection, in order: one read at a
 * time, chained. */
typedef struct client_read {
    redis_storage *rs;
    char *tenant, *client_id;
    char **collections;
    uint64_t *after_seq;
    size_t count, next;
    size_t limit;
    sync_events_cb done;
    void *user_data;
} client_read;

static void client_read_free(client_read *cr)
{
    for (size_t i = 0; i < cr->count; i++)
        free(cr->collections[i]);
    free(cr->collections);
    free(cr->after_seq);
    free(cr->tenant);
    free(cr->client_id);
    free(cr);
}

static void client_read_next(client_read *cr);

static void on_client_read(void *user_data, int status, const sync_event *events, size_t count,
                           const sync_head *head, bool complete)
{
    client_read *cr = user_data;
    cr->done(cr->user_data, status, events, count, head, complete);
    cr->next++;
    client_read_next(cr);
}

static void client_read_next(client_read *cr)
{
    if (cr->next == cr->count) {
        client_read_free(cr);
        return;
    }
    start_read(cr->rs, cr->tenant, cr->collections[cr->next], cr->after_seq[cr->next], cr->limit,
               cr->client_id, on_client_read, cr);
}

static client_read *client_read_new(redis_storage *rs, const char *tenant, const char *client_id,
                                    const char *const *collections, const uint64_t *after_seq,
                                    size_t count)
{
    client_read *cr = calloc(1, sizeof *cr);
    if (!cr)
        return NULL;
    cr->rs = rs;
    cr->tenant = strdup(tenant);
    cr->client_id = strdup(client_id);
    cr->collections = calloc(count ? count : 1, sizeof *cr->collections);
    cr->after_seq = calloc(count ? count : 1, sizeof *cr->after_seq);
    bool ok = cr->tenant && cr->client_id && cr->collections && cr->after_seq;
    for (size_t i = 0; ok && i < count; i++) {
        ok = (cr->collections[i] = strdup(collections[i] ? collections[i] : "")) != NULL;
        cr->after_seq[i] = after_seq ? after_seq[i] : 0;
        cr->count = i + 1;
    }
    if (!ok) {
        client_read_free(cr);
        return NULL;
    }
    return cr;
}

static void redis_events_for_client(void *ctx, const char *tenant, const char *client_id,
                                    const char *const *collections, const uint64_t *after_seq,
                                    size_t collection_count, size_t limit, sync_events_cb done,
                                    void *user_data)
{
    if (!tenant || !client_id || (!collections && collection_count > 0)) {
        for (size_t i = 0; i < collection_count; i++)
            done(user_data, SYNC_STORAGE_INVALID, NULL, 0, NULL, false);
        return;
    }
    client_read *cr = client_read_new(ctx, tenant, client_id, collections, after_seq,
                                      collection_count);
    if (!cr) {
        for (size_t i = 0; i < collection_count; i++)
            done(user_data, SYNC_STORAGE_UNAVAILABLE, NULL, 0, NULL, false);
        return;
    }
    cr->limit = limit;
    cr->done = done;
    cr->user_data = user_data;
    client_read_next(cr);
}

typedef struct head_call {
    redis_storage *rs;
    sync_head_cb done;
    void *user_data;
} head_call;

static void on_head_reply(void *arg, redisReply *reply)
{
    head_call *call = arg;
    sync_head head;
    if (reply && reply->type != REDIS_REPLY_ERROR && parse_head(reply, &head)) {
        call->done(call->user_data, SYNC_STORAGE_OK, &head);
    } else {
        redis_note_error(call->rs, NULL, reply, "head");
        call->done(call->user_data, SYNC_STORAGE_UNAVAILABLE, NULL);
    }
    free(call);
}

static void redis_head(void *ctx, const char *tenant, const char *collection, sync_head_cb done,
                       void *user_data)
{
    redis_storage *rs = ctx;
    if (!tenant || !collection) {
        done(user_data, SYNC_STORAGE_INVALID, NULL);
        return;
    }
    redis_link *link = usable_link(rs);
    collection_state *col = link ? redis_collection(rs, tenant, collection) : NULL;
    head_call *call = col ? malloc(sizeof *call) : NULL;
    if (call) {
        *call = (head_call){.rs = rs, .done = done, .user_data = user_data};
        /* The read script with a cursor past any seq reads the head alone. */
        if (redis_send_read(rs, link, col, UINT64_MAX, 0, NULL, on_head_reply, call))
            return;
        free(call);
    }
    done(user_data, SYNC_STORAGE_UNAVAILABLE, NULL);
}

/* ---- snapshot ------------------------------------------------------------------------------- */

typedef struct snapshot_call {
    redis_storage *rs;
    sync_snapshot_cb done;
    void *user_data;
} snapshot_call;

static int compare_documents(const void *a, const void *b)
{
    return strcmp(((const sync_document *)a)->document_id, ((const sync_document *)b)->document_id);
}

/* Live documents sorted by id (bytewise), and what holds their strings. */
typedef struct document_list {
    sync_document *docs;
    char **owned;
    size_t count, owned_count;
} document_list;

static void document_list_release(document_list *l)
{
    for (size_t i = 0; i < l->owned_count; i++)
        free(l->owned[i]);
    free(l->owned);
    free(l->docs);
}

/* {id, version, ...} -> l. */
static bool parse_documents(const redisReply *flat, document_list *l)
{
    memset(l, 0, sizeof *l);
    if (!is_array(flat, 0) || flat->elements % 2 != 0)
        return false;
    size_t max = flat->elements / 2 + 1;
    l->docs = malloc(max * sizeof *l->docs);
    l->owned = malloc(max * sizeof *l->owned);
    if (!l->docs || !l->owned)
        return false;
    for (size_t i = 0; i + 1 < flat->elements; i += 2) {
        const redisReply *id = flat->element[i], *v = flat->element[i + 1];
        char *owned = is_string(id) && is_string(v)
                          ? parse_version(v->str, v->len, id->str, &l->docs[l->count])
                          : NULL;
        if (!owned)
            return false;
        l->owned[l->owned_count++] = owned;
        if (!l->docs[l->count].deleted)
            l->count++;
    }
    qsort(l->docs, l->count, sizeof *l->docs, compare_documents);
    return true;
}

static void on_snapshot_reply(void *arg, redisReply *reply)
{
    snapshot_call *call = arg;
    sync_head head;
    document_list l;
    memset(&l, 0, sizeof l);
    if (reply && reply->type != REDIS_REPLY_ERROR && parse_head(reply, &head) &&
        reply->elements == 4 && parse_documents(reply->element[3], &l)) {
        call->done(call->user_data, SYNC_STORAGE_OK, l.docs, l.count, &head);
    } else {
        redis_note_error(call->rs, NULL, reply, "snapshot");
        call->done(call->user_data, SYNC_STORAGE_UNAVAILABLE, NULL, 0, NULL);
    }
    document_list_release(&l);
    free(call);
}

static void redis_snapshot(void *ctx, const char *tenant, const char *collection,
                           sync_snapshot_cb done, void *user_data)
{
    redis_storage *rs = ctx;
    if (!tenant || !collection) {
        done(user_data, SYNC_STORAGE_INVALID, NULL, 0, NULL);
        return;
    }
    redis_link *link = usable_link(rs);
    collection_state *col = link ? redis_collection(rs, tenant, collection) : NULL;
    snapshot_call *call = col ? malloc(sizeof *call) : NULL;
    if (call) {
        *call = (snapshot_call){.rs = rs, .done = done, .user_data = user_data};
        char epoch[SYNC_EPOCH_MAX];
        redis_new_epoch(rs, epoch);
        const char *argv[] = {"EVALSHA", redis_script_sha(REDIS_SCRIPT_SNAPSHOT), "2",
                              col->keys.docs, col->keys.meta, epoch};
        size_t len[] = {7, 40, 1, col->keys.docs_len, col->keys.meta_len, strlen(epoch)};
        if (redis_link_send(link, on_snapshot_reply, call, 6, argv, len))
            return;
        free(call);
    }
    done(user_data, SYNC_STORAGE_UNAVAILABLE, NULL, 0, NULL);
}

/* ---- retention -------------------------------------------------------------------------------- */

/* Walks the collections set with SSCAN and trims each collection with the
 * trim script, a bounded number of entries per call, one call at a time. */
typedef struct retention_run {
    redis_storage *rs;
    redis_link *link;
    int64_t before_ms;
    sync_count_cb done;
    void *user_data;
    uint64_t cleared;
    char cursor[FETCH_NUMBER_LEN];
    char **members;             /* of the current SSCAN page */
    size_t member_count, next;
} retention_run;

static void retention_scan(retention_run *run);
static void retention_trim_next(retention_run *run);

static void retention_free_page(retention_run *run)
{
    for (size_t i = 0; i < run->member_count; i++)
        free(run->members[i]);
    free(run->members);
    run->members = NULL;
    run->member_count = run->next = 0;
}

static void retention_finish(retention_run *run, int status)
{
    retention_free_page(run);
    run->done(run->user_data, status, status == SYNC_STORAGE_OK ? run->cleared : 0);
    free(run);
}

static void on_trim_reply(void *arg, redisReply *reply)
{
    retention_run *run = arg;
    if (!is_array(reply, 2) || !is_integer(reply->element[0]) || !is_integer(reply->element[1])) {
        redis_note_error(run->rs, run->link, reply, "retention trim");
        retention_finish(run, SYNC_STORAGE_UNAVAILABLE);
        return;
    }
    run->cleared += (uint64_t)reply->element[0]->integer;
    if (reply->element[1]->integer == 0)
        run->next++;   /* this collection is done */
    retention_trim_next(run);
}

static void retention_trim_next(retention_run *run)
{
    if (run->next == run->member_count) {
        retention_free_page(run);
        if (strcmp(run->cursor, "0") == 0)
            retention_finish(run, SYNC_STORAGE_OK);
        else
            retention_scan(run);
        return;
    }
    char *tenant, *collection;
    const char *member = run->members[run->next];
    collection_state *col = NULL;
    if (redis_keys_parse_member(member, strlen(member), &tenant, &collection)) {
        col = redis_collection(run->rs, tenant, collection);
        free(tenant);
        free(collection);
    }
    if (!col) {
        run->next++;
        retention_trim_next(run);
        return;
    }
    char before[FETCH_NUMBER_LEN], most[FETCH_NUMBER_LEN];
    snprintf(before, sizeof before, "%" PRId64, run->before_ms);
    snprintf(most, sizeof most, "%d", TRIM_ENTRIES_PER_CALL);
    const char *argv[] = {"EVALSHA", redis_script_sha(REDIS_SCRIPT_TRIM), "3", col->keys.log,
                          col->keys.ids, col->keys.meta, before, most};
    size_t len[] = {7, 40, 1, col->keys.log_len, col->keys.ids_len, col->keys.meta_len,
                    strlen(before), strlen(most)};
    if (!redis_link_send(run->link, on_trim_reply, run, 8, argv, len))
        retention_finish(run, SYNC_STORAGE_UNAVAILABLE);
}

static bool retention_take_page(retention_run *run, const redisReply *r)
{
    if (!is_array(r, 2) || !is_string(r->element[0]) || !is_array(r->element[1], 0) ||
        r->element[0]->len >= sizeof run->cursor)
        return false;
    memcpy(run->cursor, r->element[0]->str, r->element[0]->len + 1);
    const redisReply *page = r->element[1];
    run->members = calloc(page->elements ? page->elements : 1, sizeof *run->members);
    if (!run->members)
        return false;
    for (size_t i = 0; i < page->elements; i++) {
        if (!is_string(page->element[i]) || !(run->members[i] = strdup(page->element[i]->str)))
            return false;
        run->member_count = i + 1;
    }
    return true;
}

static void on_scan_reply(void *arg, redisReply *reply)
{
    retention_run *run = arg;
    if (!retention_take_page(run, reply)) {
        redis_note_error(run->rs, run->link, reply, "retention scan");
        retention_finish(run, SYNC_STORAGE_UNAVAILABLE);
        return;
    }
    retention_trim_next(run);
}

static void retention_scan(retention_run *run)
{
    char count[FETCH_NUMBER_LEN];
    snprintf(count, sizeof count, "%d", REGISTRY_SCAN_COUNT);
    const char *argv[] = {"SSCAN", run->rs->registry_key, run->cursor, "COUNT", count};
    size_t len[] = {5, strlen(run->rs->registry_key), strlen(run->cursor), 5, strlen(count)};
    if (!redis_link_send(run->link, on_scan_reply, run, 5, argv, len))
        retention_finish(run, SYNC_STORAGE_UNAVAILABLE);
}

static void redis_clear_events_before(void *ctx, int64_t before_ms, sync_count_cb done,
                                      void *user_data)
{
    redis_storage *rs = ctx;
    redis_link *link = usable_link(rs);
    retention_run *run = link ? calloc(1, sizeof *run) : NULL;
    if (!run) {
        done(user_data, SYNC_STORAGE_UNAVAILABLE, 0);
        return;
    }
    *run = (retention_run){.rs = rs, .link = link, .before_ms = before_ms, .done = done,
                           .user_data = user_data};
    strcpy(run->cursor, "0");
    retention_scan(run);
}

/* ---- listener, watch, health ------------------------------------------------------------------ */

static void redis_set_listener(void *ctx, sync_listener_fn listener, void *listener_data)
{
    redis_storage *rs = ctx;
    pthread_rwlock_wrlock(&rs->listener_lock);
    rs->listener = listener;
    rs->listener_data = listener_data;
    pthread_rwlock_unlock(&rs->listener_lock);
}

static void redis_watch(void *ctx, const char *tenant, const char *collection, bool watching)
{
    redis_storage *rs = ctx;
    collection_state *col = redis_collection(rs, tenant, collection);
    if (col)
        announcer_watch(rs, col, watching);
    else
        log_error("redis storage: out of memory watching %s/%s", tenant, collection);
}

/* Every connection up: the announcer's and each calling thread's. */
static bool redis_available(void *ctx)
{
    redis_storage *rs = ctx;
    return announcer_available(rs->announcer) &&
           atomic_load(&rs->threads_up) == atomic_load(&rs->threads_running);
}

static void redis_metrics(void *ctx,
                          void (*emit)(void *arg, const char *name, const char *help,
                                       const char *type, double value),
                          void *arg)
{
    redis_storage *rs = ctx;
    emit(arg, "nebula_storage_available", "1 while every storage connection is up", "gauge",
         redis_available(rs) ? 1 : 0);
    emit(arg, "nebula_storage_connects_total", "Redis connections established", "counter",
         (double)atomic_load(&rs->link_stats.connects));
    emit(arg, "nebula_storage_disconnects_total", "Redis connections lost or failed", "counter",
         (double)atomic_load(&rs->link_stats.disconnects));
    emit(arg, "nebula_storage_timeouts_total", "Redis connections dropped for a command unanswered",
         "counter", (double)atomic_load(&rs->link_stats.timeouts));
    emit(arg, "nebula_storage_errors_total", "Redis commands answered with an error", "counter",
         (double)atomic_load(&rs->command_errors));
    emit(arg, "nebula_storage_fetches_total",
         "event fetches by the announcer: other brokers' events, gaps, resyncs",
         "counter", (double)atomic_load(&rs->fetches));
    emit(arg, "nebula_storage_gaps_skipped_total", "gaps announced past: fetching failed, or the events were trimmed",
         "counter", (double)atomic_load(&rs->gaps_skipped));
    emit(arg, "nebula_storage_watched_collections", "collections with subscribers here", "gauge",
         (double)atomic_load(&rs->watched));
}

/* ---- create / destroy ----------------------------------------------------------------------------- */

static void redis_destroy(void *ctx)
{
    redis_storage *rs = ctx;
    announcer_stop(rs->announcer);
    collection_state *c, *tmp;
    HASH_ITER(hh, rs->collections, c, tmp) {
        HASH_DEL(rs->collections, c);
        collection_free(c);
    }
    pthread_rwlock_destroy(&rs->listener_lock);
    pthread_rwlock_destroy(&rs->table_lock);
    pthread_mutex_destroy(&rs->threads_lock);
    free(rs->registry_key);
    free(rs->prefix);
    free(rs);
}

static const sync_storage_ops redis_ops = {
    .save_events = redis_save_events,
    .events_after = redis_events_after,
    .events_for_client = redis_events_for_client,
    .clear_events_before = redis_clear_events_before,
    .snapshot = redis_snapshot,
    .head = redis_head,
    .set_listener = redis_set_listener,
    .destroy = redis_destroy,
    .thread_start = redis_thread_start,
    .thread_stop = redis_thread_stop,
    .watch = redis_watch,
    .available = redis_available,
    .metrics = redis_metrics,
};

void redis_storage_options_init(redis_storage_options *opts)
{
    opts->url = REDIS_STORAGE_DEFAULT_URL;
    opts->prefix = REDIS_STORAGE_DEFAULT_PREFIX;
    opts->max_log = REDIS_STORAGE_DEFAULT_MAX_LOG;
}

static bool prefix_is_valid(const char *prefix)
{
    for (const char *p = prefix; *p; p++)
        if (*p == '{' || *p == '}' || (unsigned char)*p < 0x21 || (unsigned char)*p >= 0x7f)
            return false;
    return strlen(prefix) <= 64;
}

static bool make_node_id(redis_storage *rs)
{
    unsigned char raw[NODE_ID_LEN / 2];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return false;
    for (size_t i = 0; i < sizeof raw; i++)
        sprintf(&rs->node[2 * i], "%02x", raw[i]);
    return true;
}

sync_storage *redis_storage_create(const redis_storage_options *opts, char *err, size_t err_len)
{
    redis_storage_options defaults;
    redis_storage_options_init(&defaults);
    if (!opts)
        opts = &defaults;
    redis_endpoint ep;
    if (!redis_endpoint_parse(opts->url ? opts->url : defaults.url, &ep, err, err_len))
        return NULL;
    const char *prefix = opts->prefix ? opts->prefix : defaults.prefix;
    if (!prefix_is_valid(prefix)) {
        snprintf(err, err_len, "--redis-prefix '%s': at most 64 printable characters, no "
                 "spaces or braces", prefix);
        return NULL;
    }
    redis_storage *rs = calloc(1, sizeof *rs);
    sync_storage *s = calloc(1, sizeof *s);
    size_t registry_len = strlen(prefix) + sizeof "collections";
    if (!rs || !s || !make_node_id(rs) || !(rs->prefix = strdup(prefix)) ||
        !(rs->registry_key = malloc(registry_len))) {
        if (rs)
            free(rs->prefix);
        free(rs);
        free(s);
        snprintf(err, err_len, "redis storage: out of memory");
        return NULL;
    }
    snprintf(rs->registry_key, registry_len, "%scollections", prefix);
    rs->endpoint = ep;
    rs->max_log = opts->max_log;
    pthread_rwlock_init(&rs->listener_lock, NULL);
    pthread_rwlock_init(&rs->table_lock, NULL);
    pthread_mutex_init(&rs->threads_lock, NULL);
    s->ops = &redis_ops;
    s->ctx = rs;
    if (!(rs->announcer = announcer_start(rs))) {
        snprintf(err, err_len, "redis storage: cannot start the announcer thread");
        sync_storage_destroy(s);
        return NULL;
    }
    return s;
}
