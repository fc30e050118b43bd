/* custom_storage: the documentation example of a storage written against
 * storage/sync_storage.h alone, "the journal storage".
 *
 * It keeps everything in memory (nothing survives a restart: a new storage
 * gives every collection a new epoch, so reconnecting clients get a
 * snapshot) and, as what makes it worth writing, appends every accepted
 * event as one JSON line to a journal file: an audit trail that `tail -f`,
 * `jq` or a loader can read. See custom_storage.c for what a storage must
 * promise and where each promise is kept, and docs/ARCHITECTURE.md,
 * "Writing a custom storage".
 *
 * Journal lines, one per accepted event, in seq order per collection:
 *
 *   {"seq":1,"tenant":"t","collection":"c","id":"e1","type":"insert",
 *    "document_id":"d1","client_id":"a","hlc":7,"timestamp_ms":1000,
 *    "data":"{\"v\":1}"}
 *
 * (on one line). data is the document written as a JSON string (null for a
 * delete), so a line stays one line whatever the document holds; strings are
 * escaped as JSON requires, other bytes are copied as they are. Duplicates,
 * conflicts and rejections write nothing. The journal is flushed after every
 * save that accepted something. It is an audit trail, not what the storage
 * reads back: a failed write does not fail the save; it shows in
 * ferror(journal).
 *
 * Policies the contract leaves to a storage:
 *  - No size cap: memory grows with the retained log and the documents
 *    (about two copies of each event: one in the log, one as the document's
 *    current version). Bound it with clear_events_before (the broker's
 *    retention). Ids of events that clear_events_before dropped are forgotten
 *    with them.
 *  - Every call completes before it returns, on the calling thread, with no
 *    lock held: a callback may call the storage again.
 *  - One mutex guards the whole storage (the simplest correct choice; see
 *    custom_storage.c). The listener runs while it is held, so the listener
 *    must not call into the storage; set_listener waits for a listener call
 *    in progress.
 *  - Snapshots list documents sorted by document_id (bytewise).
 *  - Running out of memory during a call aborts the process (an example's
 *    simplification; see custom_storage.c).
 */
#ifndef NEBULA_CUSTOM_STORAGE_H
#define NEBULA_CUSTOM_STORAGE_H

#include <stdio.h>

#include "sync_storage.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Creates an empty journal storage. journal: where accepted events are
 * appended (NULL: no journal); borrowed, it must stay open until the storage
 * is destroyed, and nothing else may write to it meanwhile. Returns NULL with
 * errno set (ENOMEM, or getentropy's error) on failure. Free the result with
 * sync_storage_destroy(); the journal is not closed. */
sync_storage *journal_storage_create(FILE *journal);

#ifdef __cplusplus
}
#endif

#endif
