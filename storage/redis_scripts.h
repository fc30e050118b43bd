/* redis_scripts: the Lua scripts of the Redis storage (one .lua file each
 * in storage/lua/, embedded at build time) and their SHA-1 names for EVALSHA. Each link
 * loads them (SCRIPT LOAD) whenever it connects, before any call uses
 * them, so a restarted Redis has them again. */
#ifndef NEBULA_REDIS_SCRIPTS_H
#define NEBULA_REDIS_SCRIPTS_H

typedef enum redis_script {
    REDIS_SCRIPT_SAVE,
    REDIS_SCRIPT_READ,
    REDIS_SCRIPT_SNAPSHOT,
    REDIS_SCRIPT_TRIM,
    REDIS_SCRIPT_COUNT
} redis_script;

/* 40 lowercase hex digits. Thread-safe. */
const char *redis_script_sha(redis_script script);
const char *redis_script_source(redis_script script);

#endif
