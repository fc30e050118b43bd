/* sync_storage: the parts of the storage contract that do not depend on an
 * implementation: status messages and the symmetric free of a storage
 * handle. Every implementation's create function returns a malloc'ed
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

void sync_storage_destroy(sync_storage *s)
{
    if (s == NULL)
        return;
    if (s->ops != NULL && s->ops->destroy != NULL)
        s->ops->destroy(s->ctx);
    free(s);
}
