/* address: "HOST:PORT" strings as used by --listen and --admin-listen.
 * HOST is an IPv4 address, a bracketed IPv6 address ("[::1]:8080") or a
 * name resolved with getaddrinfo; PORT is 0-65535 (0: the kernel picks). */
#ifndef NEBULA_ADDRESS_H
#define NEBULA_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct host_port {
    char host[256];   /* without brackets */
    uint16_t port;
} host_port;

/* Splits and checks the syntax; does not resolve. */
bool host_port_parse(const char *text, host_port *out);

/* Resolves to the first passive address; false if it does not resolve. */
bool host_port_resolve(const host_port *hp, struct sockaddr_storage *out, socklen_t *out_len);

/* Port of a bound socket, 0 on error. */
uint16_t socket_local_port(int fd);

#endif
