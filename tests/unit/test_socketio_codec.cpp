// Unit tests of the Engine.IO v4 / Socket.IO v5 packets nebula-sync-bench
// speaks to the seed's server (bench/socketio_codec.h), on the exact strings
// a Socket.IO 4 server sends and expects.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>

extern "C" {
#include "socketio_codec.h"
}

namespace {

// p points into msg: a string literal, or a string that outlives p.
bool Parse(const char *msg, sio_packet *p) {
  return sio_parse(reinterpret_cast<const uint8_t *>(msg), strlen(msg), p);
}

std::string Data(const sio_packet &p) { return std::string(reinterpret_cast<const char *>(p.data), p.data_len); }

TEST(SocketIoCodec, EngineIoPackets) {
  sio_packet p;
  ASSERT_TRUE(Parse("0{\"sid\":\"x\",\"upgrades\":[],\"pingInterval\":25000,\"pingTimeout\":20000,"
                    "\"maxPayload\":1000000}", &p));
  EXPECT_EQ(p.kind, SIO_OPEN);
  EXPECT_EQ(sio_open_max_payload(&p), 1000000u);
  ASSERT_TRUE(Parse("2", &p));
  EXPECT_EQ(p.kind, SIO_PING);
  ASSERT_TRUE(Parse("3", &p));
  EXPECT_EQ(p.kind, SIO_PONG);
  ASSERT_TRUE(Parse("1", &p));
  EXPECT_EQ(p.kind, SIO_CLOSE);
  ASSERT_TRUE(Parse("6", &p));
  EXPECT_EQ(p.kind, SIO_NOOP);
  ASSERT_TRUE(Parse("5", &p));
  EXPECT_EQ(p.kind, SIO_UNSUPPORTED);
  EXPECT_FALSE(Parse("", &p));
  EXPECT_FALSE(Parse("7", &p));
  EXPECT_FALSE(Parse("x", &p));
  ASSERT_TRUE(Parse("0{}", &p));
  EXPECT_EQ(sio_open_max_payload(&p), 0u);
}

TEST(SocketIoCodec, ConnectAndErrors) {
  sio_packet p;
  ASSERT_TRUE(Parse("40{\"sid\":\"abc\"}", &p));
  EXPECT_EQ(p.kind, SIO_CONNECT);
  EXPECT_FALSE(p.other_namespace);
  EXPECT_EQ(Data(p), "{\"sid\":\"abc\"}");
  ASSERT_TRUE(Parse("44{\"message\":\"Authentication failed\"}", &p));
  EXPECT_EQ(p.kind, SIO_CONNECT_ERROR);
  ASSERT_TRUE(Parse("41", &p));
  EXPECT_EQ(p.kind, SIO_DISCONNECT);
  EXPECT_FALSE(Parse("4", &p));
  EXPECT_FALSE(Parse("49", &p));
}

TEST(SocketIoCodec, Namespaces) {
  sio_packet p;
  ASSERT_TRUE(Parse("40/admin,{\"sid\":\"abc\"}", &p));
  EXPECT_TRUE(p.other_namespace);
  EXPECT_EQ(Data(p), "{\"sid\":\"abc\"}");
  ASSERT_TRUE(Parse("42/,[\"a\",1]", &p));   // "/" is the main namespace
  EXPECT_FALSE(p.other_namespace);
  EXPECT_FALSE(Parse("42/admin[\"a\"]", &p));   // an unterminated namespace
}

TEST(SocketIoCodec, EventsAndAcks) {
  sio_packet p;
  ASSERT_TRUE(Parse("42[\"server:sync\",[{\"id\":\"e1\"}]]", &p));
  EXPECT_EQ(p.kind, SIO_EVENT);
  EXPECT_FALSE(p.has_id);
  const uint8_t *args;
  size_t n;
  ASSERT_TRUE(sio_event_args(&p, "server:sync", &args, &n));
  EXPECT_EQ(std::string(reinterpret_cast<const char *>(args), n), "[{\"id\":\"e1\"}]");
  EXPECT_FALSE(sio_event_args(&p, "server:syn", &args, &n));
  EXPECT_FALSE(sio_event_args(&p, "client:sync", &args, &n));

  ASSERT_TRUE(Parse("4317[{\"success\":true}]", &p));
  EXPECT_EQ(p.kind, SIO_ACK);
  EXPECT_TRUE(p.has_id);
  EXPECT_EQ(p.id, 17u);
  char why[64];
  EXPECT_TRUE(sio_ack_success(&p, why, sizeof why));

  ASSERT_TRUE(Parse("430[{\"success\":false,\"error\":\"Client not registered\"}]", &p));
  EXPECT_EQ(p.id, 0u);
  EXPECT_FALSE(sio_ack_success(&p, why, sizeof why));
  EXPECT_STREQ(why, "Client not registered");

  ASSERT_TRUE(Parse("431[]", &p));
  EXPECT_FALSE(sio_ack_success(&p, why, sizeof why));
  EXPECT_STREQ(why, "[]");
  EXPECT_FALSE(Parse("421234567890123456789[\"a\"]", &p));   // an id longer than 18 digits
}

TEST(SocketIoCodec, WritesEventHeads) {
  char out[64];
  size_t n = sio_event_head(out, true, 42, "client:sync");
  EXPECT_EQ(std::string(out, n), "4242[\"client:sync\",");
  n = sio_event_head(out, false, 0, "client:info");
  EXPECT_EQ(std::string(out, n), "42[\"client:info\",");
  // and they parse back
  std::string packet = std::string(out, n) + "{}]";
  sio_packet p;
  ASSERT_TRUE(Parse(packet.c_str(), &p));
  const uint8_t *args;
  size_t len;
  ASSERT_TRUE(sio_event_args(&p, "client:info", &args, &len));
  EXPECT_EQ(std::string(reinterpret_cast<const char *>(args), len), "{}");
}

}  // namespace
