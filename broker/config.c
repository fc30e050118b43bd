/* config: one table of options, read from three sources in order of
 * precedence (file, environment, command line). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "address.h"

typedef bool (*option_setter)(nebula_config *cfg, const char *value, char *err, size_t err_len);

static char *trim(char *s);

typedef struct option_spec {
    const char *name;          /* flag without dashes, config-file key */
    const char *value_hint;
    const char *help;
    option_setter set;
} option_spec;

static bool reject(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool reject(char *err, size_t err_len, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(err, err_len, fmt, args);
    va_end(args);
    return false;
}

static bool copy_value(char *dst, const char *value, const char *name, char *err, size_t err_len)
{
    if (strlen(value) >= CONFIG_MAX_VALUE)
        return reject(err, err_len, "--%s: value longer than %d bytes", name, CONFIG_MAX_VALUE - 1);
    strcpy(dst, value);
    return true;
}

static bool parse_unsigned(const char *value, unsigned long long min, unsigned long long max,
                           unsigned long long *out)
{
    if (!isdigit((unsigned char)value[0]))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool parse_seconds(const char *value, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(value, &end);
    if (errno || end == value || *end != '\0' || !isfinite(v) || v <= 0 || v > 86400)
        return false;
    *out = v;
    return true;
}

static bool set_address(char *dst, const char *name, const char *value, char *err, size_t err_len)
{
    host_port parsed;
    if (!host_port_parse(value, &parsed))
        return reject(err, err_len, "--%s: expected HOST:PORT (e.g. 127.0.0.1:8080), got '%s'",
                      name, value);
    return copy_value(dst, value, name, err, err_len);
}

static bool set_listen(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    return set_address(cfg->listen, "listen", v, err, err_len);
}

static bool set_admin_listen(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    return set_address(cfg->admin_listen, "admin-listen", v, err, err_len);
}

static bool set_tls_cert(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    return copy_value(cfg->tls_cert, v, "tls-cert", err, err_len);
}

static bool set_tls_key(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    return copy_value(cfg->tls_key, v, "tls-key", err, err_len);
}

static bool set_workers(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    unsigned long long n;
    if (!parse_unsigned(v, 1, 1024, &n))
        return reject(err, err_len, "--workers: expected a number from 1 to 1024, got '%s'", v);
    cfg->broker.workers = (int)n;
    return true;
}

static bool set_max_message_size(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    unsigned long long n;
    if (!parse_unsigned(v, 1, UINT32_MAX, &n))
        return reject(err, err_len,
                      "--max-message-size: expected bytes from 1 to 4294967295, got '%s'", v);
    cfg->broker.max_message_size = n;
    return true;
}

static bool set_max_connections(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    unsigned long long n;
    if (!parse_unsigned(v, 1, 100000000, &n))
        return reject(err, err_len,
                      "--max-connections: expected a number from 1 to 100000000, got '%s'", v);
    cfg->broker.max_connections = (uint32_t)n;
    return true;
}

static bool set_seconds(double *dst, const char *name, const char *v, char *err, size_t err_len)
{
    if (!parse_seconds(v, dst))
        return reject(err, err_len, "--%s: expected seconds (0 < s <= 86400), got '%s'", name, v);
    return true;
}

static bool set_idle_timeout(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    return set_seconds(&cfg->broker.idle_timeout_s, "idle-timeout", v, err, err_len);
}

static bool set_handshake_timeout(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    return set_seconds(&cfg->broker.handshake_timeout_s, "handshake-timeout", v, err, err_len);
}

static bool set_drain_timeout(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    return set_seconds(&cfg->broker.drain_timeout_s, "drain-timeout", v, err, err_len);
}

static bool set_origins(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    return copy_value(cfg->origins, v, "origins", err, err_len);
}

static bool set_auth(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    if (strcmp(v, "none") != 0 && strcmp(v, "tokens") != 0)
        return reject(err, err_len, "--auth: expected none or tokens, got '%s'", v);
    strcpy(cfg->auth, v);
    return true;
}

static bool set_tokens(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    return copy_value(cfg->tokens, v, "tokens", err, err_len);
}

static bool set_storage(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    if (strcmp(v, "memory") == 0)
        cfg->broker.storage_kind = NEBULA_STORAGE_MEMORY;
    else if (strcmp(v, "redis") == 0)
        cfg->broker.storage_kind = NEBULA_STORAGE_REDIS;
    else
        return reject(err, err_len, "--storage: expected memory or redis, got '%s'", v);
    return true;
}

static bool set_redis_url(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    return copy_value(cfg->redis_url, v, "redis-url", err, err_len);
}

static bool set_redis_prefix(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    return copy_value(cfg->redis_prefix, v, "redis-prefix", err, err_len);
}

static bool set_redis_max_log(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    unsigned long long n;
    if (!parse_unsigned(v, 0, 1ull << 40, &n))
        return reject(err, err_len, "--redis-max-log: expected events from 0 (no limit) to "
                      "1099511627776, got '%s'", v);
    cfg->broker.redis_max_log = n;
    cfg->redis_option_given = true;
    return true;
}

static bool parse_strategy(const char *name, sync_conflict_strategy *out)
{
    static const char *const names[] = {"last-write-wins", "server-wins", "client-wins"};
    for (int i = 0; i < 3; i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (sync_conflict_strategy)i;
            return true;
        }
    }
    return false;
}

static bool set_conflict_resolution(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    if (parse_strategy(v, &cfg->broker.conflict_strategy))
        return true;
    return reject(err, err_len,
                  "--conflict-resolution: expected last-write-wins, server-wins or client-wins, "
                  "got '%s'", v);
}

/* "notes-*=server-wins, drafts=client-wins": checked here, split in finish(). */
static bool set_conflict_rules(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    char copy[CONFIG_MAX_VALUE];
    if (!copy_value(copy, v, "conflict-rules", err, err_len))
        return false;
    size_t count = 0;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        sync_conflict_strategy strategy;
        if (eq)
            *eq = '\0';
        char *pattern = trim(item);
        if (!eq || !*pattern || !parse_strategy(trim(eq + 1), &strategy))
            return reject(err, err_len,
                          "--conflict-rules: expected GLOB=STRATEGY[,...] with last-write-wins, "
                          "server-wins or client-wins, got '%s'", v);
        if (++count > CONFIG_MAX_CONFLICT_RULES)
            return reject(err, err_len, "--conflict-rules: more than %d rules",
                          CONFIG_MAX_CONFLICT_RULES);
    }
    strcpy(cfg->conflict_rules, v);
    return true;
}

static bool set_slow_consumer(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    if (strcmp(v, "catch-up") == 0)
        cfg->broker.slow_consumer_close = false;
    else if (strcmp(v, "close") == 0)
        cfg->broker.slow_consumer_close = true;
    else
        return reject(err, err_len, "--slow-consumer: expected catch-up or close, got '%s'", v);
    return true;
}

static bool set_max_output_buffer(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    unsigned long long n;
    if (!parse_unsigned(v, 1024, 1ull << 32, &n))
        return reject(err, err_len,
                      "--max-output-buffer: expected bytes from 1024 to 4294967296, got '%s'", v);
    cfg->broker.max_output_buffer = (size_t)n;
    return true;
}

static bool set_retention(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    char *end;
    errno = 0;
    double seconds = strtod(v, &end);
    if (errno || end == v || *end != '\0' || !isfinite(seconds) || seconds <= 0)
        return reject(err, err_len, "--retention: expected seconds (> 0), got '%s'", v);
    cfg->broker.retention_s = seconds;
    return true;
}

static bool set_cleanup_interval(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    return set_seconds(&cfg->broker.cleanup_interval_s, "cleanup-interval", v, err, err_len);
}

static bool set_log_level(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    if (!nebula_log_level_parse(v, &cfg->broker.log_level))
        return reject(err, err_len, "--log-level: expected debug, info, warn or error, got '%s'", v);
    return true;
}

static bool set_log_enabled(nebula_config *cfg, const char *v, char *err, size_t err_len)
{
    if (!strcasecmp(v, "true") || !strcmp(v, "1") || !strcasecmp(v, "yes"))
        cfg->broker.logging_enabled = true;
    else if (!strcasecmp(v, "false") || !strcmp(v, "0") || !strcasecmp(v, "no"))
        cfg->broker.logging_enabled = false;
    else
        return reject(err, err_len, "--log-enabled: expected true or false, got '%s'", v);
    return true;
}

static const option_spec options[] = {
    {"listen", "HOST:PORT", "WebSocket listener (default 127.0.0.1:8080; port 0: any free port)",
     set_listen},
    {"tls-cert", "FILE", "PEM certificate chain; with --tls-key the listener speaks TLS only",
     set_tls_cert},
    {"tls-key", "FILE", "PEM private key of --tls-cert (reloaded with the cert on SIGHUP)",
     set_tls_key},
    {"workers", "N", "worker threads (default: number of cores)", set_workers},
    {"admin-listen", "HOST:PORT", "admin HTTP: /healthz /readyz /metrics (default 127.0.0.1:9090)",
     set_admin_listen},
    {"max-message-size", "BYTES", "largest WebSocket message accepted (default 1048576)",
     set_max_message_size},
    {"max-connections", "N", "open connections allowed in all (default 100000)",
     set_max_connections},
    {"idle-timeout", "SECONDS", "silence before a ping, then before closing (default 60)",
     set_idle_timeout},
    {"handshake-timeout", "SECONDS", "time allowed for TLS + HTTP upgrade (default 10)",
     set_handshake_timeout},
    {"drain-timeout", "SECONDS", "on SIGTERM, wait this long for clients to close (default 10)",
     set_drain_timeout},
    {"origins", "LIST", "comma-separated allowed Origin values (default: any)", set_origins},
    {"auth", "MODE", "none (anonymous, tenant 'default') or tokens (default: tokens if --tokens)",
     set_auth},
    {"tokens", "FILE", "token file: '<token> <tenant> read=<globs> write=<globs>' per line",
     set_tokens},
    {"storage", "KIND", "memory (default: this process only) or redis (shared by brokers, durable)",
     set_storage},
    {"redis-url", "URL", "redis://[user:password@]host:port/db (default redis://127.0.0.1:6379/0)",
     set_redis_url},
    {"redis-prefix", "PREFIX", "prefix of every Redis key and channel (default nebula:)",
     set_redis_prefix},
    {"redis-max-log", "N", "events kept per collection in Redis, older ones trimmed (default "
     "1000000; 0: no limit)", set_redis_max_log},
    {"conflict-resolution", "STRATEGY",
     "last-write-wins (default), server-wins or client-wins", set_conflict_resolution},
    {"conflict-rules", "LIST",
     "per-collection strategies, first match wins: 'notes-*=server-wins,drafts=client-wins'",
     set_conflict_rules},
    {"slow-consumer", "POLICY",
     "catch-up (default: pause live delivery, catch up from storage) or close (1008)",
     set_slow_consumer},
    {"max-output-buffer", "BYTES", "unsent bytes before a subscriber is slow (default 1048576)",
     set_max_output_buffer},
    {"retention", "SECONDS", "events older than this are cleared (default 604800: 7 days)",
     set_retention},
    {"cleanup-interval", "SECONDS", "how often old events are cleared (default 3600)",
     set_cleanup_interval},
    {"log-level", "LEVEL", "debug, info, warn or error (default info)", set_log_level},
    {"log-enabled", "BOOL", "false silences all logging (default true)", set_log_enabled},
};

#define OPTION_COUNT (sizeof options / sizeof options[0])

static const option_spec *find_option(const char *name, size_t name_len)
{
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (strlen(options[i].name) == name_len && strncmp(options[i].name, name, name_len) == 0)
            return &options[i];
    return NULL;
}

void nebula_config_print_usage(FILE *out)
{
    fprintf(out,
            "usage: nebula-syncd [OPTIONS]\n"
            "Nebula Sync broker: real-time sync of JSON document collections over\n"
            "WebSocket (path /v1/sync, subprotocol nebula-sync.v1).\n\n"
            "Options (each also NEBULA_<NAME> in the environment, e.g. NEBULA_LISTEN,\n"
            "and 'name = value' in a --config file; flags win over the environment,\n"
            "which wins over the file):\n");
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s %s", options[i].name, options[i].value_hint);
        fprintf(out, "  %-30s %s\n", flag, options[i].help);
    }
    fprintf(out, "  %-30s %s\n  %-30s %s\n  %-30s %s\n", "--config FILE",
            "read settings from FILE first", "--help", "show this help and exit", "--version",
            "print the version and exit");
    fprintf(out, "\nSignals: SIGTERM/SIGINT drain and exit 0; SIGHUP reloads the TLS certificate.\n");
}

static void set_defaults(nebula_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    nebula_broker_options_init(&cfg->broker);
    strcpy(cfg->listen, cfg->broker.listen);
    strcpy(cfg->admin_listen, cfg->broker.admin_listen);
}

static bool apply(nebula_config *cfg, const option_spec *opt, const char *value, const char *source,
                  char *err, size_t err_len)
{
    char reason[512];
    if (opt->set(cfg, value, reason, sizeof reason))
        return true;
    if (source)
        snprintf(err, err_len, "%s: %s", source, reason);
    else
        snprintf(err, err_len, "%s", reason);
    return false;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    char *end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

static bool load_file(nebula_config *cfg, const char *path, char *err, size_t err_len)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, err_len, "--config: cannot read %s: %s", path, strerror(errno));
        return false;
    }
    char line[CONFIG_MAX_VALUE + 128];
    int number = 0;
    bool ok = true;
    while (ok && fgets(line, sizeof line, f)) {
        number++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *text = trim(line);
        if (*text == '\0')
            continue;
        char *eq = strchr(text, '=');
        char where[300];
        snprintf(where, sizeof where, "%s:%d", path, number);
        if (!eq) {
            snprintf(err, err_len, "%s: expected 'name = value'", where);
            ok = false;
            break;
        }
        *eq = '\0';
        char *name = trim(text), *value = trim(eq + 1);
        const option_spec *opt = find_option(name, strlen(name));
        if (!opt) {
            snprintf(err, err_len, "%s: unknown setting '%s'", where, name);
            ok = false;
        } else {
            ok = apply(cfg, opt, value, where, err, err_len);
        }
    }
    fclose(f);
    return ok;
}

/* NEBULA_MAX_MESSAGE_SIZE -> "max-message-size" */
static bool load_environment(nebula_config *cfg, char *const *envp, char *err, size_t err_len)
{
    for (size_t i = 0; envp && envp[i]; i++) {
        if (strncmp(envp[i], "NEBULA_", 7) != 0)
            continue;
        const char *eq = strchr(envp[i], '=');
        if (!eq)
            continue;
        char name[64];
        size_t len = (size_t)(eq - envp[i]) - 7;
        if (len >= sizeof name)
            continue;
        for (size_t k = 0; k < len; k++) {
            char c = envp[i][7 + k];
            name[k] = c == '_' ? '-' : (char)tolower((unsigned char)c);
        }
        const option_spec *opt = find_option(name, len);
        if (!opt)
            continue;   /* other NEBULA_ variables may belong to other tools */
        char source[80];
        snprintf(source, sizeof source, "environment %.*s", (int)(eq - envp[i]), envp[i]);
        if (!apply(cfg, opt, eq + 1, source, err, err_len))
            return false;
    }
    return true;
}

/* Splits "--name=value" or "--name value". Returns the number of argv
 * entries used, 0 on error. */
static int parse_flag(int argc, char *const *argv, int i, const char **name, size_t *name_len,
                      const char **value, char *err, size_t err_len)
{
    const char *arg = argv[i];
    if (strncmp(arg, "--", 2) != 0) {
        snprintf(err, err_len, "unexpected argument '%s' (see --help)", arg);
        return 0;
    }
    *name = arg + 2;
    const char *eq = strchr(*name, '=');
    if (eq) {
        *name_len = (size_t)(eq - *name);
        *value = eq + 1;
        return 1;
    }
    *name_len = strlen(*name);
    if (i + 1 >= argc) {
        snprintf(err, err_len, "%s: missing value", arg);
        return 0;
    }
    *value = argv[i + 1];
    return 2;
}

static bool is_flag(const char *arg, const char *flag)
{
    return strcmp(arg, flag) == 0;
}

/* First pass: --help, --version and --config (which must be read before
 * the other flags are applied). */
static config_outcome scan_special_flags(int argc, char *const *argv, const char **config_path,
                                         char *err, size_t err_len)
{
    for (int i = 1; i < argc; i++) {
        if (is_flag(argv[i], "--help") || is_flag(argv[i], "-h"))
            return CONFIG_HELP;
        if (is_flag(argv[i], "--version"))
            return CONFIG_VERSION;
        if (is_flag(argv[i], "--config")) {
            if (i + 1 >= argc) {
                snprintf(err, err_len, "--config: missing value");
                return CONFIG_ERROR;
            }
            *config_path = argv[++i];
        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            *config_path = argv[i] + 9;
        }
    }
    return CONFIG_RUN;
}

static bool load_flags(nebula_config *cfg, int argc, char *const *argv, char *err, size_t err_len)
{
    for (int i = 1; i < argc;) {
        const char *name, *value;
        size_t name_len;
        int used = parse_flag(argc, argv, i, &name, &name_len, &value, err, err_len);
        if (!used)
            return false;
        i += used;
        if (name_len == 6 && strncmp(name, "config", 6) == 0)
            continue;
        const option_spec *opt = find_option(name, name_len);
        if (!opt) {
            snprintf(err, err_len, "unknown option '--%.*s' (see --help)", (int)name_len, name);
            return false;
        }
        if (!apply(cfg, opt, value, NULL, err, err_len))
            return false;
    }
    return true;
}

static bool split_origins(nebula_config *cfg, char *err, size_t err_len)
{
    strcpy(cfg->origin_storage, cfg->origins);
    size_t count = 0;
    char *save = NULL;
    for (char *item = strtok_r(cfg->origin_storage, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        item = trim(item);
        if (*item == '\0')
            continue;
        if (count == CONFIG_MAX_ORIGINS) {
            snprintf(err, err_len, "--origins: more than %d origins", CONFIG_MAX_ORIGINS);
            return false;
        }
        cfg->origin_list[count++] = item;
    }
    cfg->broker.allowed_origins = count ? cfg->origin_list : NULL;
    cfg->broker.allowed_origin_count = count;
    return true;
}

static void split_conflict_rules(nebula_config *cfg)
{
    strcpy(cfg->conflict_rule_storage, cfg->conflict_rules);
    size_t count = 0;
    char *save = NULL;
    for (char *item = strtok_r(cfg->conflict_rule_storage, ",", &save); item;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        *eq = '\0';   /* validated by set_conflict_rules */
        cfg->conflict_rule_list[count].pattern = trim(item);
        parse_strategy(trim(eq + 1), &cfg->conflict_rule_list[count].strategy);
        count++;
    }
    cfg->broker.conflict_rules = count ? cfg->conflict_rule_list : NULL;
    cfg->broker.conflict_rule_count = count;
}

static bool finish(nebula_config *cfg, char *err, size_t err_len)
{
    split_conflict_rules(cfg);
    cfg->broker.listen = cfg->listen;
    cfg->broker.admin_listen = cfg->admin_listen;
    cfg->broker.tls_cert_file = cfg->tls_cert[0] ? cfg->tls_cert : NULL;
    cfg->broker.tls_key_file = cfg->tls_key[0] ? cfg->tls_key : NULL;
    if ((cfg->broker.tls_cert_file == NULL) != (cfg->broker.tls_key_file == NULL)) {
        snprintf(err, err_len, "--tls-cert and --tls-key must be given together");
        return false;
    }
    if (strcmp(cfg->auth, "tokens") == 0 && !cfg->tokens[0]) {
        snprintf(err, err_len, "--auth tokens needs --tokens FILE");
        return false;
    }
    if (strcmp(cfg->auth, "none") == 0 && cfg->tokens[0]) {
        snprintf(err, err_len, "--auth none contradicts --tokens; give one of them");
        return false;
    }
    cfg->broker.tokens_file = cfg->tokens[0] ? cfg->tokens : NULL;
    if (cfg->broker.storage_kind != NEBULA_STORAGE_REDIS &&
        (cfg->redis_url[0] || cfg->redis_prefix[0] || cfg->redis_option_given)) {
        snprintf(err, err_len, "--redis-url, --redis-prefix and --redis-max-log need --storage redis");
        return false;
    }
    cfg->broker.redis_url = cfg->redis_url[0] ? cfg->redis_url : NULL;
    cfg->broker.redis_prefix = cfg->redis_prefix[0] ? cfg->redis_prefix : NULL;
    return split_origins(cfg, err, err_len);
}

config_outcome nebula_config_load(nebula_config *cfg, int argc, char *const *argv,
                                  char *const *envp, char *err, size_t err_len)
{
    set_defaults(cfg);
    const char *config_path = NULL;
    config_outcome outcome = scan_special_flags(argc, argv, &config_path, err, err_len);
    if (outcome != CONFIG_RUN)
        return outcome;
    if (config_path && !load_file(cfg, config_path, err, err_len))
        return CONFIG_ERROR;
    if (!load_environment(cfg, envp, err, err_len) || !load_flags(cfg, argc, argv, err, err_len) ||
        !finish(cfg, err, err_len))
        return CONFIG_ERROR;
    return CONFIG_RUN;
}
