/* embed_broker: a sync server inside your own program, in 30 lines.
 * The seed's createSyncServer({authenticate, logging}) + start(), in C. */
#include <stdio.h>
#include <string.h>

#include <event2/event.h>

#include "nebula_broker.h"

/* The seed's authenticate(socket, token): accept one token, in tenant "demo". */
static bool authenticate(void *user_data, const char *token, const char *client_id,
                         nebula_grant *grant)
{
    (void)user_data;
    (void)client_id;
    if (strcmp(token, "valid-token-0123456789") != 0)
        return false;
    auth_grant_allow_all(grant, "demo");
    return true;
}

int main(void)
{
    nebula_broker_options opts;
    nebula_broker_options_init(&opts);   /* memory storage, 127.0.0.1:8080 */
    opts.authenticate = authenticate;
    opts.log_level = NEBULA_LOG_INFO;
    nebula_broker *broker;
    char err[256];
    if (nebula_broker_create(&opts, &broker, err, sizeof err) != NEBULA_OK ||
        nebula_broker_start(broker, err, sizeof err) != NEBULA_OK) {
        fprintf(stderr, "embed_broker: %s\n", err);
        return 1;
    }
    event_base_dispatch(nebula_broker_event_base(broker));   /* until nebula_broker_stop() */
    nebula_broker_free(broker);
    return 0;
}
