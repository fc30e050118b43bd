/* loop_mailbox: a mutex-guarded queue and an eventfd (see loop_mailbox.h). */
#include "loop_mailbox.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

typedef struct mail {
    void (*fn)(void *arg);
    void *arg;
    struct mail *next;
} mail;

struct loop_mailbox {
    pthread_mutex_t lock;
    mail *head, *tail;
    int fd;
    struct event *readable;
};

static mail *take_all(loop_mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    mail *all = mb->head;
    mb->head = mb->tail = NULL;
    pthread_mutex_unlock(&mb->lock);
    return all;
}

static void run_all(mail *m)
{
    while (m) {
        mail *next = m->next;
        m->fn(m->arg);
        free(m);
        m = next;
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    uint64_t n;
    if (read(fd, &n, sizeof n) < 0) {
        /* EAGAIN: another turn already took the wakeup; the queue decides. */
    }
    run_all(take_all(arg));
}

loop_mailbox *loop_mailbox_create(struct event_base *base)
{
    loop_mailbox *mb = calloc(1, sizeof *mb);
    if (!mb)
        return NULL;
    pthread_mutex_init(&mb->lock, NULL);
    mb->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (mb->fd >= 0)
        mb->readable = event_new(base, mb->fd, EV_READ | EV_PERSIST, on_readable, mb);
    if (!mb->readable || event_add(mb->readable, NULL) != 0) {
        loop_mailbox_free(mb);
        return NULL;
    }
    return mb;
}

bool loop_mailbox_post(loop_mailbox *mb, void (*fn)(void *arg), void *arg)
{
    mail *m = malloc(sizeof *m);
    if (!m)
        return false;
    *m = (mail){.fn = fn, .arg = arg};
    pthread_mutex_lock(&mb->lock);
    bool was_empty = mb->head == NULL;
    if (mb->tail)
        mb->tail->next = m;
    else
        mb->head = m;
    mb->tail = m;
    pthread_mutex_unlock(&mb->lock);
    if (was_empty) {
        uint64_t one = 1;
        if (write(mb->fd, &one, sizeof one) < 0) {
            /* EAGAIN: the counter is saturated, so a wakeup is pending anyway. */
        }
    }
    return true;
}

void loop_mailbox_free(loop_mailbox *mb)
{
    if (!mb)
        return;
    run_all(take_all(mb));
    if (mb->readable)
        event_free(mb->readable);
    if (mb->fd >= 0)
        close(mb->fd);
    pthread_mutex_destroy(&mb->lock);
    free(mb);
}
