/* tls: OpenSSL server contexts and their hot reload. */
#include "tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>

/* TLS 1.2 suites: forward secrecy (ECDHE) and AEAD only. TLS 1.3 suites are
 * OpenSSL's defaults, all of which are modern. */
static const char tls12_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

static void describe_openssl_error(char *err, size_t err_len, const char *what, const char *file)
{
    unsigned long code = ERR_get_error();
    char detail[256] = "unknown error";
    if (code)
        ERR_error_string_n(code, detail, sizeof detail);
    ERR_clear_error();
    snprintf(err, err_len, "%s %s: %s", what, file, detail);
}

/* RFC 7301: pick "http/1.1" if the client offers it; a client offering only
 * other protocols (h2) is refused, since we only speak the HTTP/1.1 upgrade. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *out_len,
                       const unsigned char *in, unsigned int in_len, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char http11[] = "\x08http/1.1";
    unsigned char *selected = NULL;
    if (SSL_select_next_proto(&selected, out_len, http11, sizeof http11 - 1, in, in_len) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

SSL_CTX *tls_context_create(const char *cert_file, const char *key_file, char *err,
                            size_t err_len)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        describe_openssl_error(err, err_len, "cannot create TLS context for", cert_file);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Resumption works through stateless session tickets (TLS 1.2 and 1.3);
     * a server-side session cache would only hold memory per handshake, and
     * behind a load balancer the next connection rarely comes back here. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    if (SSL_CTX_set_cipher_list(ctx, tls12_ciphers) != 1) {
        describe_openssl_error(err, err_len, "cannot set TLS ciphers for", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        describe_openssl_error(err, err_len, "cannot load TLS certificate", cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        describe_openssl_error(err, err_len, "cannot load TLS key", key_file);
        goto fail;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        describe_openssl_error(err, err_len, "TLS key does not match certificate", cert_file);
        goto fail;
    }
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_holder_init(tls_holder *holder, SSL_CTX *ctx)
{
    pthread_mutex_init(&holder->lock, NULL);
    holder->ctx = ctx;
}

void tls_holder_destroy(tls_holder *holder)
{
    SSL_CTX_free(holder->ctx);
    holder->ctx = NULL;
    pthread_mutex_destroy(&holder->lock);
}

SSL *tls_holder_new_ssl(tls_holder *holder)
{
    pthread_mutex_lock(&holder->lock);
    SSL *ssl = holder->ctx ? SSL_new(holder->ctx) : NULL;
    pthread_mutex_unlock(&holder->lock);
    return ssl;
}

void tls_holder_replace(tls_holder *holder, SSL_CTX *ctx)
{
    pthread_mutex_lock(&holder->lock);
    SSL_CTX *old = holder->ctx;
    holder->ctx = ctx;
    pthread_mutex_unlock(&holder->lock);
    SSL_CTX_free(old);   /* live SSLs hold their own reference */
}
