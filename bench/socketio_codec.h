/* socketio_codec: the part of Engine.IO v4 and Socket.IO v5 that
 * nebula-sync-bench fanout --target socketio speaks, over the websocket
 * transport only (GET /socket.io/?EIO=4&transport=websocket, no polling, no
 * upgrade, no binary attachments).
 *
 * Every WebSocket text message is one Engine.IO packet: a type digit and its
 * data. 0 open (the handshake JSON: sid, pingInterval, pingTimeout,
 * maxPayload), 1 close, 2 ping (the server pings; the client answers 3 pong),
 * 3 pong, 4 message, 5 upgrade, 6 noop. A message packet carries one
 * Socket.IO packet: a type digit, an optional namespace ("/chat,"), an
 * optional ack id (digits), then JSON: 0 connect (client: "40" or "40{auth}";
 * server: 40{"sid":...}), 1 disconnect, 2 event ["name", args...], 3 ack
 * [args...], 4 connect error {"message":...}; 5 and 6 (binary) are not used
 * here. So "42[\"server:sync\",[...]]" is an event, "4217[...]" the ack for
 * id 17 and "2" a ping.
 *
 * Pure, in the style of the project's codecs: bytes in, a description of
 * them out, pointing into the caller's buffer; nothing allocated.
 */
#ifndef NEBULA_BENCH_SOCKETIO_CODEC_H
#define NEBULA_BENCH_SOCKETIO_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SIO_PATH "/socket.io/"
#define SIO_QUERY "EIO=4&transport=websocket"

enum sio_kind {
    SIO_OPEN,               /* Engine.IO open; data: the handshake object */
    SIO_CLOSE,
    SIO_PING,
    SIO_PONG,
    SIO_NOOP,
    SIO_CONNECT,            /* Socket.IO connect; data: {"sid":...} from a server */
    SIO_DISCONNECT,
    SIO_EVENT,              /* data: ["name",args...] */
    SIO_ACK,                /* data: [args...] */
    SIO_CONNECT_ERROR,      /* data: {"message":...} */
    SIO_UNSUPPORTED,        /* upgrade, binary event or ack */
};

struct sio_packet {
    enum sio_kind kind;
    bool other_namespace;   /* a namespace other than "/" was named */
    bool has_id;            /* an ack id was given */
    uint64_t id;
    const uint8_t *data;    /* the rest of the message (may be empty) */
    size_t data_len;
};

/* Parses one WebSocket text message; false if it is not a well-formed
 * Engine.IO v4 / Socket.IO v5 packet (empty, unknown type digit, an
 * unterminated namespace, an ack id of more than 18 digits). */
bool sio_parse(const uint8_t *msg, size_t len, struct sio_packet *p);

/* For SIO_EVENT: whether the event is called name; *args then points at its
 * arguments (after the name and its comma, before the closing bracket). */
bool sio_event_args(const struct sio_packet *p, const char *name, const uint8_t **args,
                    size_t *args_len);

/* For SIO_OPEN: the handshake's maxPayload (bytes), 0 when it has none. */
uint64_t sio_open_max_payload(const struct sio_packet *p);

/* For SIO_ACK of the seed's client:sync: [{"success":true}] is true; else
 * false with the answer's "error" string (or the whole answer, cut) in why. */
bool sio_ack_success(const struct sio_packet *p, char *why, size_t cap);

/* Writes the start of an event packet, up to and including the comma after
 * its name: 42["name",  or, with an ack id, 42<id>["name",  into out;
 * returns its length (at most 32 + strlen(name); name needs no escaping). */
size_t sio_event_head(char *out, bool with_id, uint64_t id, const char *name);

#endif
