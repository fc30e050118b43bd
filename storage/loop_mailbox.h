/* loop_mailbox: hands work from any thread to one libevent loop.
 *
 * The broker's loops are created without libevent's locking, so another
 * thread may not touch their events; it posts a function instead, which the
 * loop's thread runs on its next turn (woken through an eventfd).
 */
#ifndef NEBULA_LOOP_MAILBOX_H
#define NEBULA_LOOP_MAILBOX_H

#include <stdbool.h>

struct event_base;

typedef struct loop_mailbox loop_mailbox;

/* On the loop's thread. NULL when out of memory or descriptors. */
loop_mailbox *loop_mailbox_create(struct event_base *base);

/* From any thread: fn(arg) will run on the loop's thread, in posting order.
 * False when out of memory (fn will not run). */
bool loop_mailbox_post(loop_mailbox *mb, void (*fn)(void *arg), void *arg);

/* On the loop's thread: runs what is still queued, then frees. No post may
 * race with it. */
void loop_mailbox_free(loop_mailbox *mb);

#endif
