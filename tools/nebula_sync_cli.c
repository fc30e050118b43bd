/* nebula-sync-cli: a small command-line client over client/nebula_client.h,
 * for trying a broker by hand and for scripts.
 *
 *   nebula-sync-cli [options] welcome
 *       connect, print the Welcome, close (exit 0 if the session worked)
 *   nebula-sync-cli [options] watch COLLECTION [SEQ EPOCH]
 *       subscribe (from the cursor SEQ/EPOCH, or with a snapshot) and print
 *       snapshot pages and events until Ctrl-C; prints the cursor at the end
 *   nebula-sync-cli [options] push COLLECTION DOCUMENT_ID JSON
 *       push one event (--type insert|update|delete) and print its result
 *
 * Options: --url URL (default ws://127.0.0.1:8080/v1/sync), --token TOKEN,
 * --client-id ID, --ca FILE (trust this CA for wss://), --insecure (no
 * certificate check), --timeout MS (connect timeout), --type TYPE.
 * Output is one line per thing that happened, on stdout; errors on stderr.
 * Exit status: 0 success, 1 failure, 2 usage error.
 */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/rand.h>

#include "nebula_client.h"

typedef enum command { CMD_WELCOME, CMD_WATCH, CMD_PUSH } command;

typedef struct cli {
    command cmd;
    const char *collection;
    nebula_cursor from;
    bool has_from;
    const char *document_id;
    const char *json;
    nebula_event_type type;
    char event_id[37];
    struct event_base *base;
    nebula_client *client;
    int exit_code;
} cli;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: nebula-sync-cli [options] welcome\n"
            "       nebula-sync-cli [options] watch COLLECTION [SEQ EPOCH]\n"
            "       nebula-sync-cli [options] push COLLECTION DOCUMENT_ID JSON\n"
            "options: --url URL  --token TOKEN  --client-id ID  --ca FILE  --insecure\n"
            "         --timeout MS  --type insert|update|delete\n");
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A random (version 4) UUID: the push's idempotency key. */
static bool make_uuid(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1)
        return false;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return true;
}

/* Document data is JSON, but the wire does not promise it: print control
 * bytes escaped so one event stays one line. */
static void print_data(const uint8_t *data, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (data[i] < 0x20 || data[i] == 0x7f)
            printf("\\x%02x", data[i]);
        else
            putchar(data[i]);
    }
}

/* ---- callbacks ------------------------------------------------------------ */

static void on_welcome(nebula_client *c, const nebula_client_welcome *w, void *ud)
{
    cli *app = ud;
    printf("welcome session=%s tenant=%s server=%s max_message_size=%" PRIu32 "\n", w->session_id,
           w->tenant, w->server_version, w->max_message_size);
    int rc = NEBULA_CLIENT_OK;
    if (app->cmd == CMD_WELCOME) {
        rc = nebula_client_close(c, 1000);
    } else if (app->cmd == CMD_WATCH) {
        rc = nebula_client_subscribe(c, app->collection, app->has_from ? &app->from : NULL);
    } else {
        nebula_client_event ev = {
            .id = app->event_id,
            .type = app->type,
            .collection = app->collection,
            .document_id = app->document_id,
            .data = (const uint8_t *)app->json,
            .data_len = app->type == NEBULA_EVENT_DELETE ? 0 : strlen(app->json),
            .timestamp_ms = now_ms(),
            .hlc = (uint64_t)now_ms() << 16,
        };
        uint64_t request_id;
        rc = nebula_client_push(c, &ev, 1, &request_id);
    }
    if (rc != NEBULA_CLIENT_OK) {
        fprintf(stderr, "nebula-sync-cli: %s\n", nebula_client_strerror(rc));
        app->exit_code = 1;
        nebula_client_close(c, 1000);
    }
}

static void on_subscribed(nebula_client *c, const char *collection, nebula_subscribe_mode mode,
                          const nebula_cursor *head, void *ud)
{
    (void)c;
    (void)ud;
    printf("subscribed collection=%s mode=%s head=%" PRIu64 "/%s\n", collection,
           mode == NEBULA_SUBSCRIBE_REPLAY ? "replay" : mode == NEBULA_SUBSCRIBE_SNAPSHOT ? "snapshot" : "?",
           head ? head->seq : 0, head ? head->epoch : "");
}

static void on_events(nebula_client *c, const char *collection, const nebula_client_event *events,
                      size_t n, void *ud)
{
    (void)c;
    (void)ud;
    static const char *const types[] = {"?", "insert", "update", "delete"};
    for (size_t i = 0; i < n; i++) {
        const nebula_client_event *e = &events[i];
        printf("event collection=%s seq=%" PRIu64 " type=%s doc=%s client=%s data=", collection,
               e->seq, (unsigned)e->type < 4 ? types[e->type] : "?", e->document_id, e->client_id);
        print_data(e->data, e->data_len);
        putchar('\n');
    }
    fflush(stdout);
}

static void on_snapshot(nebula_client *c, const char *collection, const nebula_client_document *docs,
                        size_t n, bool last, const nebula_cursor *cursor, void *ud)
{
    (void)c;
    (void)ud;
    for (size_t i = 0; i < n; i++) {
        printf("document collection=%s doc=%s seq=%" PRIu64 " data=", collection,
               docs[i].document_id, docs[i].seq);
        print_data(docs[i].data, docs[i].data_len);
        putchar('\n');
    }
    if (last && cursor)
        printf("snapshot-done collection=%s cursor=%" PRIu64 "/%s\n", collection, cursor->seq,
               cursor->epoch);
    fflush(stdout);
}

static void on_push_result(nebula_client *c, uint64_t request_id,
                           const nebula_client_push_result *results, size_t n, void *ud)
{
    cli *app = ud;
    static const char *const statuses[] = {"?", "accepted", "duplicate", "conflict", "rejected"};
    for (size_t i = 0; i < n; i++) {
        const nebula_client_push_result *r = &results[i];
        printf("result request=%" PRIu64 " event=%s status=%s seq=%" PRIu64 "%s%s\n", request_id,
               r->event_id, (unsigned)r->status < 5 ? statuses[r->status] : "?", r->seq,
               r->reason[0] ? " reason=" : "", r->reason);
        if (r->status != NEBULA_PUSH_ACCEPTED && r->status != NEBULA_PUSH_DUPLICATE)
            app->exit_code = 1;
    }
    if (app->cmd == CMD_PUSH)
        nebula_client_close(c, 1000);
}

static void on_error(nebula_client *c, int code, const char *message, void *ud)
{
    (void)c;
    cli *app = ud;
    fprintf(stderr, "nebula-sync-cli: %s (%s)\n", message, nebula_client_strerror(code));
    app->exit_code = 1;
    /* A server Error leaves the session open; the commands here have no
     * use for it then. */
    if (code > 0)
        nebula_client_close(c, 1000);
}

static void on_closed(nebula_client *c, int close_code, const char *reason, void *ud)
{
    cli *app = ud;
    if (app->cmd == CMD_WATCH) {
        nebula_cursor cur;
        if (nebula_client_get_cursor(c, app->collection, &cur) == NEBULA_CLIENT_OK)
            printf("cursor collection=%s seq=%" PRIu64 " epoch=%s\n", app->collection, cur.seq,
                   cur.epoch);
    }
    if (close_code != 1000)
        fprintf(stderr, "nebula-sync-cli: closed %d %s\n", close_code, reason);
    event_base_loopexit(app->base, NULL);
}

static void on_sigint(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    cli *app = arg;
    if (nebula_client_close(app->client, 1000) != NEBULA_CLIENT_OK)
        event_base_loopexit(app->base, NULL);
}

/* ---- arguments ------------------------------------------------------------- */

static bool parse_type(const char *s, nebula_event_type *out)
{
    if (strcmp(s, "insert") == 0)
        *out = NEBULA_EVENT_INSERT;
    else if (strcmp(s, "update") == 0)
        *out = NEBULA_EVENT_UPDATE;
    else if (strcmp(s, "delete") == 0)
        *out = NEBULA_EVENT_DELETE;
    else
        return false;
    return true;
}

/* The positional arguments after the options; false on a usage error. */
static bool parse_command(cli *app, int argc, char **argv)
{
    if (argc < 1)
        return false;
    const char *name = argv[0];
    if (strcmp(name, "welcome") == 0 && argc == 1) {
        app->cmd = CMD_WELCOME;
        return true;
    }
    if (strcmp(name, "watch") == 0 && (argc == 2 || argc == 4)) {
        app->cmd = CMD_WATCH;
        app->collection = argv[1];
        if (argc == 4) {
            char *end;
            app->from.seq = strtoull(argv[2], &end, 10);
            if (*end || strlen(argv[3]) >= sizeof app->from.epoch)
                return false;
            strcpy(app->from.epoch, argv[3]);
            app->has_from = true;
        }
        return true;
    }
    if (strcmp(name, "push") == 0 && argc == 4) {
        app->cmd = CMD_PUSH;
        app->collection = argv[1];
        app->document_id = argv[2];
        app->json = argv[3];
        return make_uuid(app->event_id);
    }
    return false;
}

int main(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"url", required_argument, NULL, 'u'},     {"token", required_argument, NULL, 't'},
        {"client-id", required_argument, NULL, 'i'}, {"ca", required_argument, NULL, 'c'},
        {"insecure", no_argument, NULL, 'k'},      {"timeout", required_argument, NULL, 'T'},
        {"type", required_argument, NULL, 'y'},    {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    cli app = {.type = NEBULA_EVENT_UPDATE};
    nebula_client_options o;
    nebula_client_options_init(&o);
    o.server_url = "ws://127.0.0.1:8080/v1/sync";
    o.client_id = "nebula-sync-cli";
    int opt;
    while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (opt) {
        case 'u': o.server_url = optarg; break;
        case 't': o.auth_token = optarg; break;
        case 'i': o.client_id = optarg; break;
        case 'c': o.tls_ca_file = optarg; break;
        case 'k': o.tls_verify = false; break;
        case 'T': o.connect_timeout_ms = atoi(optarg); break;
        case 'y':
            if (!parse_type(optarg, &app.type)) {
                usage(stderr);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!parse_command(&app, argc - optind, argv + optind)) {
        usage(stderr);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);   /* nebula_client.h: a vanished server must not kill us */

    app.base = event_base_new();
    o.callbacks = (nebula_client_callbacks){on_welcome, on_subscribed, on_events, on_snapshot,
                                            on_push_result, on_error, on_closed};
    o.user_data = &app;
    int rc = app.base ? nebula_client_create(app.base, &o, &app.client) : NEBULA_CLIENT_E_NOMEM;
    if (rc == NEBULA_CLIENT_OK)
        rc = nebula_client_connect(app.client);
    if (rc != NEBULA_CLIENT_OK) {
        fprintf(stderr, "nebula-sync-cli: %s\n", nebula_client_strerror(rc));
        nebula_client_free(app.client);
        if (app.base)
            event_base_free(app.base);
        return 1;
    }
    struct event *sigint = evsignal_new(app.base, SIGINT, on_sigint, &app);
    if (sigint)
        event_add(sigint, NULL);
    event_base_dispatch(app.base);
    if (sigint)
        event_free(sigint);
    nebula_client_free(app.client);
    event_base_free(app.base);
    return app.exit_code;
}
