/* log: leveled, timestamped lines on stderr, safe from any thread. */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Read on every log call from every thread; written rarely (configuration,
 * reload). Relaxed atomics: a late-seen change only affects a line or two. */
static atomic_bool log_enabled = true;
static atomic_int log_min_level = NEBULA_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void nebula_log_configure(bool enabled, nebula_log_level min_level)
{
    atomic_store_explicit(&log_enabled, enabled, memory_order_relaxed);
    atomic_store_explicit(&log_min_level, (int)min_level, memory_order_relaxed);
}

bool nebula_log_would_log(nebula_log_level level)
{
    return atomic_load_explicit(&log_enabled, memory_order_relaxed) &&
           (int)level >= atomic_load_explicit(&log_min_level, memory_order_relaxed);
}

static size_t format_timestamp(char *out, size_t cap)
{
    struct timeval now;
    gettimeofday(&now, NULL);
    struct tm utc;
    gmtime_r(&now.tv_sec, &utc);
    size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &utc);
    int more = snprintf(out + n, cap - n, ".%03ldZ", (long)(now.tv_usec / 1000));
    return n + (more > 0 ? (size_t)more : 0);
}

void nebula_log(nebula_log_level level, const char *fmt, ...)
{
    if (!nebula_log_would_log(level))
        return;
    char line[2048];
    size_t n = format_timestamp(line, sizeof line);
    n += (size_t)snprintf(line + n, sizeof line - n, " %s ", level_names[level]);
    va_list args;
    va_start(args, fmt);
    int body = vsnprintf(line + n, sizeof line - n, fmt, args);
    va_end(args);
    if (body < 0)
        return;
    n += (size_t)body;
    if (n > sizeof line - 2)
        n = sizeof line - 2;   /* truncated: keep the newline */
    line[n++] = '\n';
    /* One write() per line keeps lines from concurrent threads whole. */
    ssize_t ignored = write(STDERR_FILENO, line, n);
    (void)ignored;
}

bool nebula_log_level_parse(const char *name, nebula_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (nebula_log_level)i;
            return true;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = NEBULA_LOG_WARN;
        return true;
    }
    return false;
}

const char *nebula_log_level_name(nebula_log_level level)
{
    return level_names[level];
}
