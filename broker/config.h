/* config: nebula-syncd's settings from the command line, NEBULA_*
 * environment variables and an optional config file, all with the same
 * names. Precedence: built-in defaults < config file < environment <
 * command line. The result is a nebula_broker_options ready for
 * nebula_broker_create(); every value is checked here, so that a mistake is
 * reported in one line naming the option before anything listens. */
#ifndef NEBULA_CONFIG_H
#define NEBULA_CONFIG_H

#include <stdio.h>

#include "nebula_broker.h"

#define CONFIG_MAX_ORIGINS 64
#define CONFIG_MAX_CONFLICT_RULES 64
#define CONFIG_MAX_VALUE 4096

typedef struct nebula_config {
    nebula_broker_options broker;   /* its strings point into the fields below */
    char listen[CONFIG_MAX_VALUE];
    char admin_listen[CONFIG_MAX_VALUE];
    char tls_cert[CONFIG_MAX_VALUE];
    char tls_key[CONFIG_MAX_VALUE];
    char tokens[CONFIG_MAX_VALUE];
    char auth[16];                                  /* "", "none" or "tokens" */
    char redis_url[CONFIG_MAX_VALUE];
    char redis_prefix[CONFIG_MAX_VALUE];
    bool redis_option_given;                        /* --redis-max-log */
    char origins[CONFIG_MAX_VALUE];                 /* comma-separated, as given */
    char origin_storage[CONFIG_MAX_VALUE];          /* split copy */
    const char *origin_list[CONFIG_MAX_ORIGINS];
    char conflict_rules[CONFIG_MAX_VALUE];          /* "glob=strategy,...", as given */
    char conflict_rule_storage[CONFIG_MAX_VALUE];   /* split copy */
    nebula_conflict_rule conflict_rule_list[CONFIG_MAX_CONFLICT_RULES];
} nebula_config;

typedef enum config_outcome {
    CONFIG_RUN,       /* settings valid: start the daemon */
    CONFIG_HELP,      /* --help was asked for */
    CONFIG_VERSION,   /* --version was asked for */
    CONFIG_ERROR,     /* err holds a one-line reason */
} config_outcome;

/* envp: the environment (NULL-terminated "NAME=value" strings). */
config_outcome nebula_config_load(nebula_config *cfg, int argc, char *const *argv,
                                  char *const *envp, char *err, size_t err_len);

void nebula_config_print_usage(FILE *out);

#endif
