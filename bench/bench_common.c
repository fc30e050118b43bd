/* bench_common: see bench_common.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "bench_common.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "ws_frame.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

/* ------------------------------------------------------------------------ */
/* errors, option values                                                    */

static const char *program_name = "bench";
static const char *usage_hint = "(try --help)";

void bench_set_program(const char *name, const char *hint)
{
    program_name = name;
    usage_hint = hint;
}

void bench_die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", program_name);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n%s\n", usage_hint);
    va_end(ap);
    exit(2);
}

void bench_die(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", program_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(status);
}

bool bench_scan_long(const char *s, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

bool bench_scan_double(const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min) || !(v <= max))
        return false;
    *out = v;
    return true;
}

long bench_option_long(const char *option, const char *s, long min, long max)
{
    long v;
    if (!bench_scan_long(s, min, max, &v))
        bench_die_usage("%s: '%s' is not an integer in %ld..%ld", option, s, min, max);
    return v;
}

double bench_option_double(const char *option, const char *s, double min, double max)
{
    double v;
    if (!bench_scan_double(s, min, max, &v))
        bench_die_usage("%s: '%s' is not a number in %g..%g", option, s, min, max);
    return v;
}

void bench_getopt(int argc, char **argv, const struct option *longopts,
                  void (*handle)(int c, char **argv))
{
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
        handle(c, argv);
    if (optind < argc)
        bench_die_usage("unexpected argument '%s'", argv[optind]);
}

const char *bench_option_collection(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        bench_die_usage("--collection: 1 to 128 bytes");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20)
            bench_die_usage("--collection: no control characters");
    return s;
}

const char *bench_option_token(const char *s)
{
    if (strlen(s) > 4000)
        bench_die_usage("--token: longer than 4000 bytes");
    return s;
}

/* ------------------------------------------------------------------------ */
/* target URL                                                               */

void bench_parse_url(const char *url, const char *default_path, struct bench_endpoint *ep)
{
    const char *p;
    if (strncmp(url, "ws://", 5) == 0) {
        ep->tls = false;
        p = url + 5;
    } else if (strncmp(url, "wss://", 6) == 0) {
        ep->tls = true;
        p = url + 6;
    } else {
        bench_die_usage("--url: '%s' must start with ws:// or wss://", url);
    }
    const char *host_end, *after;
    if (*p == '[') {                                  /* [IPv6]:port */
        host_end = strchr(p, ']');
        if (!host_end)
            bench_die_usage("--url: unterminated '[' in '%s'", url);
        p++;
        after = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        after = host_end;
    }
    size_t hlen = (size_t)(host_end - p);
    if (hlen == 0 || hlen >= sizeof ep->host)
        bench_die_usage("--url: bad host in '%s'", url);
    memcpy(ep->host, p, hlen);
    ep->host[hlen] = '\0';

    const char *port = ep->tls ? "443" : "80";
    size_t plen = strlen(port);
    if (*after == ':') {
        port = after + 1;
        plen = strspn(port, "0123456789");
        if (plen == 0 || plen > 5 || (port[plen] != '\0' && port[plen] != '/'))
            bench_die_usage("--url: bad port in '%s'", url);
        after = port + plen;
    } else if (*after != '\0' && *after != '/') {
        bench_die_usage("--url: cannot parse '%s'", url);
    }
    memcpy(ep->port, port, plen);
    ep->port[plen] = '\0';
    long pn = strtol(ep->port, NULL, 10);
    if (pn < 1 || pn > 65535)
        bench_die_usage("--url: port %s out of range", ep->port);

    const char *path = *after ? after : default_path;
    if (strlen(path) >= sizeof ep->path || strpbrk(path, " \r\n"))
        bench_die_usage("--url: bad path in '%s'", url);
    strcpy(ep->path, path);

    bool v6 = strchr(ep->host, ':') != NULL;
    snprintf(ep->host_header, sizeof ep->host_header, v6 ? "[%s]:%s" : "%s:%s", ep->host, ep->port);

    /* SNI may not be an IP literal (RFC 6066): use "localhost" for those, which
     * is what a self-signed bench certificate names. */
    unsigned char tmp[16];
    if (inet_pton(AF_INET, ep->host, tmp) == 1 || inet_pton(AF_INET6, ep->host, tmp) == 1)
        strcpy(ep->sni, "localhost");
    else
        snprintf(ep->sni, sizeof ep->sni, "%s", ep->host);
}

/* ------------------------------------------------------------------------ */
/* clocks                                                                   */

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

uint64_t bench_mono_us(void)
{
    return clock_ns(CLOCK_MONOTONIC) / 1000u;
}

uint64_t bench_wall_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

void bench_sleep_until_ns(uint64_t t_ns)
{
    uint64_t now = bench_mono_ns();
    if (t_ns <= now)
        return;
    uint64_t d = t_ns - now;
    struct timespec ts = {(time_t)(d / 1000000000u), (long)(d % 1000000000u)};
    nanosleep(&ts, NULL);                         /* EINTR on a signal: fine */
}

void bench_sleep_until_us(uint64_t t_us)
{
    bench_sleep_until_ns(t_us * 1000u);
}

/* ------------------------------------------------------------------------ */
/* CPU and memory                                                            */

long bench_proc_rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kib = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

double bench_proc_cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* comm may contain spaces and parentheses: fields resume after the last ')'.
     * Then: 3 state, 4 ppid, ... 14 utime, 15 stime. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long long ut = 0, st = 0;
    int field = 2;
    char *save = NULL;
    for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        field++;
        if (field == 14) {
            ut = strtoull(tok, NULL, 10);
        } else if (field == 15) {
            st = strtoull(tok, NULL, 10);
            break;
        }
    }
    if (field != 15)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(ut + st) / (double)(hz > 0 ? hz : 100);
}

double bench_proc_runtime_s(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    unsigned long long sum = 0;
    bool any = false;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char file[384];
        snprintf(file, sizeof file, "%s/%s/schedstat", path, e->d_name);
        FILE *f = fopen(file, "r");
        unsigned long long ns;
        if (!f)
            continue;                 /* the thread has just exited */
        if (fscanf(f, "%llu", &ns) == 1) {
            sum += ns;
            any = true;
        }
        fclose(f);
    }
    closedir(d);
    return any ? (double)sum / 1e9 : -1;
}

long bench_broker_rss_before(pid_t pid)
{
    long rss = bench_proc_rss_kib(pid);
    if (rss < 0 || bench_proc_cpu_s(pid) < 0)
        bench_die(2, "--broker-pid %d: cannot read /proc/%d/status and /proc/%d/stat (no such "
                  "process?)", (int)pid, (int)pid, (int)pid);
    return rss;
}

double bench_self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

struct bench_host_cpu bench_host_cpu_read(void)
{
    struct bench_host_cpu h = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return h;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned long long v[8] = {0};
        if (strncmp(line, "cpu ", 4) == 0) {
            if (sscanf(line + 4, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2],
                       &v[3], &v[4], &v[5], &v[6], &v[7]) == 8) {
                long hz = sysconf(_SC_CLK_TCK);
                double k = 1.0 / (double)(hz > 0 ? hz : 100);
                /* user nice system idle iowait irq softirq steal */
                h.busy = (double)(v[0] + v[1] + v[2] + v[5] + v[6]) * k;
                h.softirq = (double)(v[5] + v[6]) * k;
                h.steal = (double)v[7] * k;
                h.ok = true;
            }
        } else if (strncmp(line, "cpu", 3) == 0 && line[3] >= '0' && line[3] <= '9') {
            h.cpus++;
        }
    }
    fclose(f);
    return h;
}

bool bench_host_share(const struct bench_host_cpu *before, const struct bench_host_cpu *after,
                      double wall_s, double known_cpu_s, struct bench_host_share *out)
{
    if (!before->ok || !after->ok || after->cpus <= 0 || wall_s <= 0)
        return false;
    out->cpus = after->cpus;
    out->busy = (after->busy - before->busy) / wall_s;
    out->softirq = (after->softirq - before->softirq) / wall_s;
    out->steal = (after->steal - before->steal) / wall_s;
    double other = out->busy - out->softirq - known_cpu_s / wall_s;
    out->other = other > 0 ? other : 0;
    return true;
}

/* ------------------------------------------------------------------------ */
/* randomness, JSON                                                          */

uint64_t bench_random_u64(void)
{
    uint64_t v = 0;
    if (RAND_bytes((unsigned char *)&v, sizeof v) != 1)
        bench_die(1, "RAND_bytes failed");
    return v;
}

void bench_json_str(FILE *j, const char *s)
{
    fputc('"', j);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(j, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(j, "\\u%04x", ch);
        else
            fputc(ch, j);
    }
    fputc('"', j);
}

void bench_write_json(const char *path, void (*writer)(FILE *j, const void *arg), const void *arg)
{
    if (!path)
        return;
    FILE *j = fopen(path, "w");
    if (!j) {
        fprintf(stderr, "%s: cannot write %s: %s\n", program_name, path, strerror(errno));
        return;
    }
    writer(j, arg);
    if (fclose(j) != 0)
        fprintf(stderr, "%s: cannot write %s: %s\n", program_name, path, strerror(errno));
}

/* ------------------------------------------------------------------------ */
/* process setup                                                            */

void bench_raise_nofile(unsigned long long need, unsigned margin, const char *what)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        bench_die(2, "getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            bench_die(2, "setrlimit(RLIMIT_NOFILE, %llu): %s", (unsigned long long)rl.rlim_max,
                      strerror(errno));
    }
    unsigned long long limit = (unsigned long long)rl.rlim_cur, total = need + margin;
    if (rl.rlim_cur == RLIM_INFINITY || total <= limit)
        return;
    bench_die(2, "NOT ENOUGH FILE DESCRIPTORS: %s need about %llu descriptors (%u spare), but this "
              "process may open at most %llu (the RLIMIT_NOFILE hard limit; the soft limit was "
              "raised to it). Use at most %lld connections, or raise the hard limit (ulimit -Hn, as "
              "root). The broker has the same kind of limit on its side.", what, total, margin, limit,
              (long long)limit - margin);
}

volatile sig_atomic_t bench_got_signal;

static void on_signal(int sig)
{
    (void)sig;
    bench_got_signal = 1;
}

void bench_catch_signals(void)
{
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

bool bench_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = pthread_create(thread, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc == 0;
}

/* ------------------------------------------------------------------------ */
/* connections                                                              */

void bench_resolve(const struct bench_endpoint *ep, struct bench_dest *d)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(ep->host, ep->port, &hints, &res);
    if (rc != 0)
        bench_die(2, "cannot resolve '%s': %s", ep->host, gai_strerror(rc));
    memcpy(&d->addr, res->ai_addr, res->ai_addrlen);
    d->len = res->ai_addrlen;
    freeaddrinfo(res);
    d->spread_src = false;
    if (d->addr.ss_family == AF_INET) {
        uint32_t a = ntohl(((struct sockaddr_in *)&d->addr)->sin_addr.s_addr);
        d->spread_src = (a >> 24) == 127;
    }
    if (!d->spread_src)
        fprintf(stderr, "%s: note: %s is not an IPv4 loopback address; source addresses are not "
                        "spread over 127.0.X.Y\n", program_name, ep->host);
}

int bench_connect_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    return err;
}

int bench_connect_start(struct bench_dest *d, const char **what)
{
    *what = "socket";
    int fd = socket(d->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (d->spread_src) {
        uint64_t i = atomic_fetch_add_explicit(&d->src_counter, 1, memory_order_relaxed);
        struct sockaddr_in src = {.sin_family = AF_INET};
        unsigned x = 1 + (unsigned)((i / 254) % 255), y = 1 + (unsigned)(i % 254);
        src.sin_addr.s_addr = htonl((127u << 24) | (x << 8) | y);
        *what = "bind to 127.0.X.Y";
        if (setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0 ||
            bind(fd, (struct sockaddr *)&src, sizeof src) < 0)
            goto fail;
    }
    *what = "connect";
    if (connect(fd, (struct sockaddr *)&d->addr, d->len) < 0 && errno != EINPROGRESS)
        goto fail;
    return fd;
fail:;
    int err = errno;
    close(fd);
    errno = err;
    return -1;
}

SSL_CTX *bench_tls_client_ctx(int exit_status)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx)
        bench_die(exit_status, "SSL_CTX_new failed");
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION))
        bench_die(exit_status, "cannot require TLS 1.2+");
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);   /* self-signed bench certificates */
    return ctx;
}

struct bufferevent *bench_bufferevent_new(struct event_base *base, int fd, SSL_CTX *ctx,
                                          const char *sni, const char **why)
{
    struct bufferevent *bev;
    if (!ctx) {
        bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
        if (!bev)
            *why = "bufferevent_socket_new failed";
        return bev;
    }
    SSL *ssl = SSL_new(ctx);
    if (!ssl || !SSL_set_tlsext_host_name(ssl, sni)) {
        SSL_free(ssl);
        *why = "SSL_new failed";
        return NULL;
    }
    bev = bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
                                         BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        *why = "bufferevent_openssl_socket_new failed";
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

bool bench_take_tls_error(struct bufferevent *bev, char *buf, size_t cap)
{
    unsigned long e = bufferevent_get_openssl_error(bev);
    if (!e)
        return false;
    ERR_error_string_n(e, buf, cap);
    while (bufferevent_get_openssl_error(bev))
        ;
    return true;
}

/* ------------------------------------------------------------------------ */
/* WebSocket upgrade                                                         */

const char *bench_ws_new_key(char key[32], char accept[WS_ACCEPT_KEY_LEN + 1])
{
    uint8_t raw[16];
    if (RAND_bytes(raw, sizeof raw) != 1)
        return "RAND_bytes failed";
    EVP_EncodeBlock((unsigned char *)key, raw, sizeof raw);   /* 24 chars + NUL */
    if (!ws_handshake_accept_key(key, strlen(key), accept))
        return "ws_handshake_accept_key failed";
    return NULL;
}

void bench_ws_write_request(struct evbuffer *out, const struct bench_endpoint *ep,
                            const char *key, const char *subprotocol, const char *user_agent)
{
    evbuffer_add_printf(out,
                        "GET %s HTTP/1.1\r\n"
                        "Host: %s\r\n"
                        "Upgrade: websocket\r\n"
                        "Connection: Upgrade\r\n"
                        "Sec-WebSocket-Key: %s\r\n"
                        "Sec-WebSocket-Version: 13\r\n"
                        "%s%s%s"
                        "User-Agent: %s\r\n"
                        "\r\n",
                        ep->path, ep->host_header, key,
                        subprotocol ? "Sec-WebSocket-Protocol: " : "", subprotocol ? subprotocol : "",
                        subprotocol ? "\r\n" : "", user_agent);
}

const char *bench_http_response_head(struct evbuffer *in, size_t *len)
{
    struct evbuffer_ptr pos = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (pos.pos < 0)
        return NULL;
    *len = (size_t)pos.pos + 4;
    return (const char *)evbuffer_pullup(in, (ev_ssize_t)*len);
}

enum bench_http_status bench_http_status_line(const char *head, size_t len, size_t *line_len,
                                              const char **headers)
{
    const char *eol = memmem(head, len, "\r\n", 2);
    size_t l0 = (size_t)(eol - head);
    *line_len = l0;
    *headers = eol + 2;
    if (l0 < 12 || strncmp(head, "HTTP/1.", 7) != 0 || head[8] != ' ')
        return BENCH_HTTP_MALFORMED;
    if (strncmp(head + 9, "101", 3) != 0 || (l0 > 12 && head[12] != ' '))
        return BENCH_HTTP_NOT_101;
    return BENCH_HTTP_101;
}

/* Case-insensitive: does the comma-separated list contain token? */
static bool has_token(const char *list, size_t len, const char *token)
{
    size_t tl = strlen(token), i = 0;
    while (i < len) {
        while (i < len && (list[i] == ' ' || list[i] == '\t' || list[i] == ','))
            i++;
        size_t s = i;
        while (i < len && list[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (list[e - 1] == ' ' || list[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(list + s, token, tl) == 0)
            return true;
    }
    return false;
}

bool bench_http_next_header(const char **pos, const char *end, const char *expected_accept,
                            struct bench_http_header *h)
{
    const char *p = *pos;
    while (p < end) {
        const char *le = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!le || le == p)
            break;
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (!colon) {
            p = le + 2;
            continue;
        }
        size_t nl = (size_t)(colon - p);
        const char *v = colon + 1;
        while (v < le && (*v == ' ' || *v == '\t'))
            v++;
        const char *ve = le;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vl = (size_t)(ve - v);
        h->value = v;
        h->value_len = vl;
#define HDR(name) (nl == sizeof(name) - 1 && strncasecmp(p, name, nl) == 0)
        if (HDR("Upgrade")) {
            h->kind = BENCH_HDR_UPGRADE;
            h->as_expected = vl == 9 && strncasecmp(v, "websocket", 9) == 0;
        } else if (HDR("Connection")) {
            h->kind = BENCH_HDR_CONNECTION;
            h->as_expected = has_token(v, vl, "upgrade");
        } else if (HDR("Sec-WebSocket-Accept")) {
            h->kind = BENCH_HDR_ACCEPT;
            h->as_expected = vl == WS_ACCEPT_KEY_LEN && memcmp(v, expected_accept, vl) == 0;
        } else if (HDR("Sec-WebSocket-Protocol")) {
            h->kind = BENCH_HDR_PROTOCOL;
            h->as_expected = vl == strlen(BENCH_SUBPROTOCOL) && memcmp(v, BENCH_SUBPROTOCOL, vl) == 0;
        } else {
            h->kind = BENCH_HDR_OTHER;
            h->as_expected = true;
        }
#undef HDR
        *pos = le + 2;
        return true;
    }
    *pos = end;
    return false;
}

/* ------------------------------------------------------------------------ */
/* masked client frames                                                      */

size_t bench_ws_header_len(size_t len)
{
    return (len < 126 ? 2 : len < 65536 ? 4 : 10) + 4;
}

void bench_ws_send_masked(struct bufferevent *bev, uint8_t opcode, uint8_t *buf, size_t hlen,
                          size_t len, const uint8_t mask[4])
{
    uint8_t head[WS_MAX_HEADER_LEN];
    size_t h = ws_frame_header_write(head, opcode, true, len, mask);
    /* h == hlen by construction (bench_ws_header_len) */
    memcpy(buf + hlen - h, head, h);
    ws_mask_apply(buf + hlen, len, mask, 0);
    bufferevent_write(bev, buf + hlen - h, h + len);
}
