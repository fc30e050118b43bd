/* sync_storage: the parts of the storage contract that do not depend on an
 * implementation: status messages, the checks every storage makes, and the
 * symmetric free of a storage handle. Every implementation's create function returns a malloc'ed
 * sync_storage whose ctx is released by ops->destroy.
 */
#include "sync_storage.h"

#include <stdlib.h>

const char *sync_storage_strerror(int status)
{
    switch (status) {
    case SYNC_STORAGE_OK:
        return "ok";
    case SYNC_STORAGE_UNAVAILABLE:
        return "storage unavailable, retry later";
    case SYNC_STORAGE_INVALID:
        return "invalid arguments to a storage call";
    case SYNC_STORAGE_FULL:
        return "storage full: a size limit refuses new data";
    default:
        return "unknown storage status";
    }
}

const char *sync_event_invalid_reason(const sync_event *ev)
{
    int type = (int)ev->type;
    if (ev->id == NULL || ev->id[0] == '\0')
        return "invalid event: empty id";
    if (ev->document_id == NULL || ev->document_id[0] == '\0')
        return "invalid event: empty document_id";
    if (type < SYNC_EVENT_INSERT || type > SYNC_EVENT_DELETE)
        return "invalid event: unknown type";
    if (ev->type != SYNC_EVENT_DELETE && (ev->data == NULL || ev->data_len == 0))
        return "invalid event: insert or update without data";
    return NULL;
}

bool sync_conflict_strategy_is_known(sync_conflict_strategy strategy)
{
    int s = (int)strategy;
    return s == SYNC_LAST_WRITE_WINS || s == SYNC_SERVER_WINS || s == SYNC_CLIENT_WINS;
}

void sync_storage_destroy(sync_storage *s)
{
    if (s == NULL)
        return;
    if (s->ops != NULL && s->ops->destroy != NULL)
        s->ops->destroy(s->ctx);
    free(s);
}
