/* admin: /healthz, /readyz and /metrics over libevent's evhttp. */
#include "admin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

struct admin_server {
    struct evhttp *http;
    uint16_t port;
    admin_sources sources;
};

static void reply_text(struct evhttp_request *req, int code, const char *reason, const char *body)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    evbuffer_add(out, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; charset=utf-8");
    evhttp_send_reply(req, code, reason, NULL);
}

static bool is_get(struct evhttp_request *req)
{
    if (evhttp_request_get_command(req) == EVHTTP_REQ_GET)
        return true;
    reply_text(req, 405, "Method Not Allowed", "only GET is served here\n");
    return false;
}

static void serve_healthz(struct evhttp_request *req, void *arg)
{
    (void)arg;
    if (is_get(req))
        reply_text(req, 200, "OK", "ok\n");
}

static void serve_readyz(struct evhttp_request *req, void *arg)
{
    admin_server *admin = arg;
    if (!is_get(req))
        return;
    const sync_storage *storage = admin->sources.storage;
    if (!*admin->sources.accepting)
        reply_text(req, 503, "Service Unavailable", "draining\n");
    else if (storage && storage->ops->available && !storage->ops->available(storage->ctx))
        reply_text(req, 503, "Service Unavailable", "storage unavailable\n");
    else
        reply_text(req, 200, "OK", "ready\n");
}

static void emit_storage_metric(void *arg, const char *name, const char *help, const char *type,
                                double value)
{
    evbuffer_add_printf(arg, "# HELP %s %s\n# TYPE %s %s\n%s %.17g\n", name, help, name, type,
                        name, value);
}

static void serve_metrics(struct evhttp_request *req, void *arg)
{
    admin_server *admin = arg;
    if (!is_get(req))
        return;
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    nebula_metrics_render(admin->sources.workers, admin->sources.worker_count, out);
    const sync_storage *storage = admin->sources.storage;
    if (storage && storage->ops->metrics)
        storage->ops->metrics(storage->ctx, emit_storage_metric, out);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4; charset=utf-8");
    evhttp_send_reply(req, 200, "OK", NULL);
}

static void serve_not_found(struct evhttp_request *req, void *arg)
{
    (void)arg;
    reply_text(req, 404, "Not Found", "not found; try /healthz, /readyz or /metrics\n");
}

admin_server *admin_server_start(struct event_base *base, const host_port *address,
                                 const admin_sources *sources, char *err, size_t err_len)
{
    admin_server *admin = calloc(1, sizeof *admin);
    if (!admin || !(admin->http = evhttp_new(base))) {
        snprintf(err, err_len, "cannot create the admin HTTP server: out of memory");
        free(admin);
        return NULL;
    }
    admin->sources = *sources;
    evhttp_set_allowed_methods(admin->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_cb(admin->http, "/healthz", serve_healthz, admin);
    evhttp_set_cb(admin->http, "/readyz", serve_readyz, admin);
    evhttp_set_cb(admin->http, "/metrics", serve_metrics, admin);
    evhttp_set_gencb(admin->http, serve_not_found, admin);
    struct evhttp_bound_socket *bound =
        evhttp_bind_socket_with_handle(admin->http, address->host, address->port);
    if (!bound) {
        snprintf(err, err_len, "cannot listen for admin HTTP on %s:%u", address->host,
                 address->port);
        admin_server_free(admin);
        return NULL;
    }
    admin->port = socket_local_port(evhttp_bound_socket_get_fd(bound));
    return admin;
}

uint16_t admin_server_port(const admin_server *admin)
{
    return admin->port;
}

void admin_server_free(admin_server *admin)
{
    if (!admin)
        return;
    evhttp_free(admin->http);
    free(admin);
}
