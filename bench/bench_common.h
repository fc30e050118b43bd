/* bench_common: the plumbing shared by the load tools in bench/
 * (nebula-ws-bench, nebula-sync-bench).
 *
 * What is here is what both tools need and do the same way: error exits with
 * the tool's name, option-value parsing, ws[s]:// URL parsing, clocks,
 * reading a broker's CPU time and RSS from /proc, machine-wide CPU time and
 * the share of it nobody measured, random numbers, JSON strings, raising
 * RLIMIT_NOFILE, resolving the target and opening client sockets
 * bound to rotating 127.0.X.Y sources, the TLS client context and socket
 * bufferevents, the WebSocket upgrade request and the check of its 101, and
 * writing masked client frames. What a tool measures, its options, its
 * messages and its output stay in the tool's own file.
 *
 * Nothing here keeps state between calls except bench_set_program() (the
 * name in error messages) and the signal flag; everything else works on
 * what the caller passes in. Functions named bench_die* and those that say
 * "exits" do not return on failure.
 */
#ifndef NEBULA_BENCH_COMMON_H
#define NEBULA_BENCH_COMMON_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <getopt.h>
#include <pthread.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <openssl/ssl.h>

#include "ws_handshake.h"

struct bufferevent;
struct event_base;
struct evbuffer;

#define BENCH_SUBPROTOCOL "nebula-sync.v1"

/* ------------------------------------------------------------------------ */
/* errors, option values                                                    */

/* Names the tool in error messages ("NAME: ...") and sets the hint line
 * bench_die_usage() prints after the message (e.g. "(try --help)"). */
void bench_set_program(const char *name, const char *usage_hint);

/* "NAME: message\nHINT\n" on stderr, exit status 2. */
void bench_die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* "NAME: message\n" on stderr, exit status `status`. */
void bench_die(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/* Parse all of s as a base-10 long / a double in [min, max]; false if it
 * is not one (the caller words the error). NaN is never in range. */
bool bench_scan_long(const char *s, long min, long max, long *out);
bool bench_scan_double(const char *s, double min, double max, double *out);

/* The same, exiting through bench_die_usage() with
 * "NAME_OF_OPTION: 's' is not an integer in MIN..MAX" /
 * "... is not a number in MIN..MAX". */
long bench_option_long(const char *option, const char *s, long min, long max);
double bench_option_double(const char *option, const char *s, double min, double max);

/* getopt_long over argv[1..] (argv[0] is the program or scenario), every
 * option handed to handle(c, argv) with optarg set; errors are left to
 * handle ('?', optopt); an argument that is no option is a usage error. */
void bench_getopt(int argc, char **argv, const struct option *longopts,
                  void (*handle)(int c, char **argv));

/* --collection (1 to 128 bytes, no control characters, as the broker
 * wants) and --token (at most 4000 bytes): s, or a usage error. */
const char *bench_option_collection(const char *s);
const char *bench_option_token(const char *s);

/* ------------------------------------------------------------------------ */
/* target URL                                                               */

struct bench_endpoint {
    bool tls;                       /* wss:// */
    char host[256];                 /* as in the URL, without brackets */
    char port[8];
    char path[1024];                /* the default path when the URL has none */
    char host_header[300];          /* HOST:PORT, [HOST]:PORT for IPv6 */
    char sni[256];                  /* the host; "localhost" for IP literals */
};

/* Parses ws://HOST[:PORT][/PATH] or wss://... into ep (PATH may carry a
 * query); default_path when the URL has none. A malformed URL exits through
 * bench_die_usage() ("--url: ..."). */
void bench_parse_url(const char *url, const char *default_path, struct bench_endpoint *ep);

/* ------------------------------------------------------------------------ */
/* clocks                                                                   */

uint64_t bench_mono_ns(void);       /* CLOCK_MONOTONIC */
uint64_t bench_mono_us(void);       /* CLOCK_MONOTONIC, microseconds */
uint64_t bench_wall_ns(void);       /* CLOCK_REALTIME */

/* Sleeps until CLOCK_MONOTONIC reaches t (returns early on a signal). */
void bench_sleep_until_ns(uint64_t t_ns);
void bench_sleep_until_us(uint64_t t_us);

/* ------------------------------------------------------------------------ */
/* CPU and memory                                                            */

long bench_proc_rss_kib(pid_t pid);     /* VmRSS from /proc/PID/status, or -1 */
double bench_proc_cpu_s(pid_t pid);     /* utime+stime (all threads) from /proc/PID/stat, or -1 */
double bench_self_cpu_s(void);          /* this process's user+system time */

/* --broker-pid: the broker's VmRSS in KiB before the run; exits with
 * status 2 when /proc/PID/status or /proc/PID/stat cannot be read. */
long bench_broker_rss_before(pid_t pid);

/* The on-CPU time of pid's threads now alive, summed from
 * /proc/PID/task/TID/schedstat (nanoseconds, where utime+stime counts clock
 * ticks of 10 ms): for steps too short for bench_proc_cpu_s(). -1 if the
 * kernel does not keep schedstat. */
double bench_proc_runtime_s(pid_t pid);

/* Machine-wide CPU time from /proc/stat, in seconds: busy (everything but
 * idle and iowait), the softirq part of it (the loopback network stack,
 * which no process is charged for), steal (the hypervisor ran something
 * else while a vCPU wanted to run), and the number of CPUs. Lets a summary
 * say whether something other than the broker and the tool used the CPUs. */
struct bench_host_cpu {
    double busy, softirq, steal;
    int cpus;
    bool ok;                        /* false: /proc/stat unreadable */
};

struct bench_host_cpu bench_host_cpu_read(void);

/* The machine's CPU over a run, in cores (CPU-seconds per second of wall
 * time), from two readings wall_s apart: busy, the softirq and steal in it,
 * and `other`: busy less softirq less the CPU the caller measured itself
 * (known_cpu_s over the run: the broker's and the tool's), never below 0. */
struct bench_host_share {
    double busy, softirq, steal, other;
    int cpus;
};

/* false when a reading failed or wall_s is not positive (out untouched). */
bool bench_host_share(const struct bench_host_cpu *before, const struct bench_host_cpu *after,
                      double wall_s, double known_cpu_s, struct bench_host_share *out);

/* ------------------------------------------------------------------------ */
/* randomness, JSON                                                          */

/* 64 random bits from RAND_bytes; exits with status 1 if that fails. */
uint64_t bench_random_u64(void);

/* s as a JSON string, quotes included: " and \ escaped, control
 * characters as \u00XX. */
void bench_json_str(FILE *j, const char *s);

/* Writes --json FILE with writer(j, arg); a file that cannot be written is
 * said on stderr (the run's result stands). Nothing when path is NULL. */
void bench_write_json(const char *path, void (*writer)(FILE *j, const void *arg), const void *arg);

/* ------------------------------------------------------------------------ */
/* process setup                                                            */

/* Raises the RLIMIT_NOFILE soft limit to the hard limit; exits with status
 * 2 if that fails, or if `need` descriptors do not fit with `margin` to
 * spare, saying so ("WHAT need about ..."). */
void bench_raise_nofile(unsigned long long need, unsigned margin, const char *what);

/* Set by the SIGINT/SIGTERM handler bench_catch_signals() installs (which
 * also ignores SIGPIPE). */
extern volatile sig_atomic_t bench_got_signal;
void bench_catch_signals(void);

/* pthread_create with SIGINT and SIGTERM blocked in the new thread, so that
 * signals reach the main thread only. false if the thread was not made. */
bool bench_thread_start(pthread_t *thread, void *(*fn)(void *), void *arg);

/* ------------------------------------------------------------------------ */
/* connections                                                              */

/* Where client sockets connect to, and whether they are bound to source
 * addresses 127.0.X.Y (X 1..255, Y 1..254, rotating; IP_BIND_ADDRESS_NO_PORT)
 * so that loopback runs never run out of ephemeral ports. */
struct bench_dest {
    struct sockaddr_storage addr;
    socklen_t len;
    bool spread_src;                /* the target is IPv4 loopback */
    atomic_uint_fast64_t src_counter;
};

/* Resolves ep's host and port into d; exits with status 2 if that fails.
 * Prints a note on stderr when sources cannot be spread. */
void bench_resolve(const struct bench_endpoint *ep, struct bench_dest *d);

/* The outcome of a non-blocking connect() once its socket is writable: 0,
 * or the errno it failed with. */
int bench_connect_error(int fd);

/* A non-blocking TCP_NODELAY socket with connect() started (thread-safe).
 * Returns the fd, or -1 with errno set and *what naming the step that
 * failed ("socket", "bind to 127.0.X.Y", "connect"); nothing is left open. */
int bench_connect_start(struct bench_dest *d, const char **what);

/* A TLS 1.2+ client context that does not verify certificates (the brokers
 * benched run with self-signed ones); exits with `exit_status` on failure. */
SSL_CTX *bench_tls_client_ctx(int exit_status);

/* Wraps a connected fd in a bufferevent that closes it on free: a TLS one
 * (handshake started, SNI sni, dirty shutdown allowed) when ctx is not
 * NULL, else a plain one. NULL with *why set if that fails; the fd is then
 * still the caller's. */
struct bufferevent *bench_bufferevent_new(struct event_base *base, int fd, SSL_CTX *ctx,
                                          const char *sni, const char **why);

/* The next OpenSSL error queued on bev, as text into buf, the rest of the
 * queue dropped; false if there was none. */
bool bench_take_tls_error(struct bufferevent *bev, char *buf, size_t cap);

/* ------------------------------------------------------------------------ */
/* WebSocket upgrade                                                         */

/* A random Sec-WebSocket-Key (24 chars) and the Sec-WebSocket-Accept the
 * broker must answer with. NULL, or why not. */
const char *bench_ws_new_key(char key[32], char accept[WS_ACCEPT_KEY_LEN + 1]);

/* Appends the GET upgrade request for ep's path to out, offering
 * Sec-WebSocket-Protocol: subprotocol (none when NULL). */
void bench_ws_write_request(struct evbuffer *out, const struct bench_endpoint *ep,
                            const char *key, const char *subprotocol, const char *user_agent);

/* The response head at the start of in, once it holds CRLFCRLF: its length
 * in *len, pulled up into one piece. NULL while incomplete. */
const char *bench_http_response_head(struct evbuffer *in, size_t *len);

enum bench_http_status { BENCH_HTTP_MALFORMED, BENCH_HTTP_NOT_101, BENCH_HTTP_101 };

/* Checks the status line of head (len bytes, ending with CRLFCRLF); *line_len
 * gets its length (for messages), *headers where the headers begin. */
enum bench_http_status bench_http_status_line(const char *head, size_t len, size_t *line_len,
                                              const char **headers);

enum bench_upgrade_header {
    BENCH_HDR_OTHER,
    BENCH_HDR_UPGRADE,              /* Upgrade */
    BENCH_HDR_CONNECTION,           /* Connection */
    BENCH_HDR_ACCEPT,               /* Sec-WebSocket-Accept */
    BENCH_HDR_PROTOCOL,             /* Sec-WebSocket-Protocol */
};

struct bench_http_header {
    enum bench_upgrade_header kind; /* header names compare case-insensitively */
    const char *value;              /* without surrounding blanks */
    size_t value_len;
    bool as_expected;               /* Upgrade: websocket; Connection lists upgrade;
                                       Accept == the expected key; Protocol == ours */
};

/* Steps through the header lines from *pos to end (the blank line ends
 * them; lines without a colon are skipped): fills h and returns true for
 * each header, false at the end. expected_accept is what Accept must be. */
bool bench_http_next_header(const char **pos, const char *end, const char *expected_accept,
                            struct bench_http_header *h);

/* ------------------------------------------------------------------------ */
/* masked client frames (RFC 6455 5.3)                                       */

/* Header length of a masked client frame with len payload bytes. */
size_t bench_ws_header_len(size_t len);

/* buf[hlen .. hlen + len) holds the payload, hlen == bench_ws_header_len(len):
 * writes the frame header in front of it, masks the payload in place with
 * mask and writes the whole frame to bev with one copy. */
void bench_ws_send_masked(struct bufferevent *bev, uint8_t opcode, uint8_t *buf, size_t hlen,
                          size_t len, const uint8_t mask[4]);

#endif
