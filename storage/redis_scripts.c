/* redis_scripts: script sources and their SHA-1 digests (see redis_scripts.h). */
#include "redis_scripts.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/sha.h>

extern const char redis_lua_save[];
extern const char redis_lua_read[];
extern const char redis_lua_snapshot[];
extern const char redis_lua_trim[];

static const char *const sources[REDIS_SCRIPT_COUNT] = {
    [REDIS_SCRIPT_SAVE] = redis_lua_save,
    [REDIS_SCRIPT_READ] = redis_lua_read,
    [REDIS_SCRIPT_SNAPSHOT] = redis_lua_snapshot,
    [REDIS_SCRIPT_TRIM] = redis_lua_trim,
};

static char shas[REDIS_SCRIPT_COUNT][2 * SHA_DIGEST_LENGTH + 1];
static pthread_once_t shas_once = PTHREAD_ONCE_INIT;

static void compute_shas(void)
{
    for (int s = 0; s < REDIS_SCRIPT_COUNT; s++) {
        unsigned char digest[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)sources[s], strlen(sources[s]), digest);
        for (int i = 0; i < SHA_DIGEST_LENGTH; i++)
            sprintf(&shas[s][2 * i], "%02x", digest[i]);
    }
}

const char *redis_script_sha(redis_script script)
{
    pthread_once(&shas_once, compute_shas);
    return shas[script];
}

const char *redis_script_source(redis_script script)
{
    return sources[script];
}
