/* log: the one logger of the broker. Lines go to stderr as
 * "<ISO-8601 UTC timestamp> <level> <message>", written with one write() so
 * that lines from different threads never interleave. The seed's
 * logging.enabled and logging.level map onto nebula_log_configure(). Library
 * code logs only through this module, never with printf. */
#ifndef NEBULA_LOG_H
#define NEBULA_LOG_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum nebula_log_level {
    NEBULA_LOG_DEBUG = 0,
    NEBULA_LOG_INFO = 1,
    NEBULA_LOG_WARN = 2,
    NEBULA_LOG_ERROR = 3,
} nebula_log_level;

/* Safe to call at any time, from any thread. Defaults: enabled, info. */
void nebula_log_configure(bool enabled, nebula_log_level min_level);

bool nebula_log_would_log(nebula_log_level level);

void nebula_log(nebula_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* "debug", "info", "warn" (or "warning"), "error" -> level. */
bool nebula_log_level_parse(const char *name, nebula_log_level *out);
const char *nebula_log_level_name(nebula_log_level level);

#define log_debug(...) nebula_log(NEBULA_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) nebula_log(NEBULA_LOG_INFO, __VA_ARGS__)
#define log_warn(...) nebula_log(NEBULA_LOG_WARN, __VA_ARGS__)
#define log_error(...) nebula_log(NEBULA_LOG_ERROR, __VA_ARGS__)

#ifdef __cplusplus
}
#endif

#endif
