/* tls: the server's OpenSSL configuration, and a holder that lets the
 * acceptor swap in a reloaded certificate while workers keep creating
 * connections.
 *
 * Policy: TLS 1.2 and 1.3 only; for 1.2 only ECDHE key exchange with AEAD
 * ciphers (AES-GCM, ChaCha20-Poly1305); ECDSA or RSA certificates; ALPN
 * selects "http/1.1" (the only protocol a WebSocket upgrade speaks); session
 * tickets on; read/write buffers released while idle to keep idle
 * connections small. */
#ifndef NEBULA_TLS_H
#define NEBULA_TLS_H

#include <pthread.h>
#include <stddef.h>

#include <openssl/ssl.h>

/* Builds a server context from PEM files; on failure returns NULL and writes
 * a one-line reason (naming the file) into err. */
SSL_CTX *tls_context_create(const char *cert_file, const char *key_file, char *err,
                            size_t err_len);

/* The current context, shared by all workers. Owner: the broker. */
typedef struct tls_holder {
    pthread_mutex_t lock;   /* guards ctx: taken once per new connection and on reload */
    SSL_CTX *ctx;
} tls_holder;

void tls_holder_init(tls_holder *holder, SSL_CTX *ctx);
void tls_holder_destroy(tls_holder *holder);

/* A new SSL for an accepted connection, from the current context. */
SSL *tls_holder_new_ssl(tls_holder *holder);

/* Replaces the context; connections made earlier keep the old one alive
 * through their own reference. Takes ownership of ctx. */
void tls_holder_replace(tls_holder *holder, SSL_CTX *ctx);

#endif
