// Unit tests of bench/events_scan.c, the load tool's lean reader of Events
// messages: it must see exactly what protobuf-c decodes (seq and data of
// every event, the collection) for messages encoded both by protobuf-c and
// the broker's way (sync_wire: a prefix plus concatenated encoded events),
// and refuse truncated or foreign input without reading out of bounds.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

extern "C" {
#include "events_scan.h"
#include "nebula_sync.pb-c.h"
#include "shared_event.h"
#include "sync_storage.h"
#include "sync_wire.h"
}

namespace {

struct Seen {
    std::vector<uint64_t> seqs;
    std::vector<std::string> data;
};

void collect(void *arg, const events_scan_event *e)
{
    auto *s = static_cast<Seen *>(arg);
    s->seqs.push_back(e->seq);
    s->data.emplace_back(reinterpret_cast<const char *>(e->data), e->data_len);
}

events_scan_result scan(const std::string &msg, Seen *seen, std::string *collection = nullptr)
{
    const uint8_t *c = nullptr;
    size_t c_len = 0;
    events_scan_result r = events_scan(reinterpret_cast<const uint8_t *>(msg.data()), msg.size(),
                                       &c, &c_len, collect, seen);
    if (collection)
        collection->assign(reinterpret_cast<const char *>(c), c_len);
    return r;
}

struct Input {
    std::string id, doc, data, client;
    uint64_t seq, hlc;
};

std::vector<Input> random_inputs(std::mt19937_64 &rng, size_t n)
{
    std::vector<Input> out;
    for (size_t i = 0; i < n; i++) {
        Input in;
        in.id = "id-" + std::to_string(rng());
        in.doc = "doc-" + std::to_string(rng() % 100);
        in.data = "{\"ts\":\"" + std::to_string(rng()) + "\",\"pad\":\"" +
                  std::string(rng() % 300, 'x') + "\"}";
        in.client = "client-" + std::to_string(rng() % 7);
        in.seq = rng() >> (rng() % 60);
        in.hlc = rng();
        out.push_back(in);
    }
    return out;
}

std::string pack_with_protobuf_c(const std::string &collection, const std::vector<Input> &in)
{
    std::vector<Nebula__Sync__V1__Event> events(in.size());
    std::vector<Nebula__Sync__V1__Event *> ptrs;
    for (size_t i = 0; i < in.size(); i++) {
        nebula__sync__v1__event__init(&events[i]);
        events[i].id = const_cast<char *>(in[i].id.c_str());
        events[i].document_id = const_cast<char *>(in[i].doc.c_str());
        events[i].client_id = const_cast<char *>(in[i].client.c_str());
        events[i].collection = const_cast<char *>(collection.c_str());
        events[i].data.data = reinterpret_cast<uint8_t *>(const_cast<char *>(in[i].data.data()));
        events[i].data.len = in[i].data.size();
        events[i].type = NEBULA__SYNC__V1__EVENT_TYPE__EVENT_TYPE_UPDATE;
        events[i].seq = in[i].seq;
        events[i].hlc = in[i].hlc;
        ptrs.push_back(&events[i]);
    }
    Nebula__Sync__V1__Events ev;
    nebula__sync__v1__events__init(&ev);
    ev.collection = const_cast<char *>(collection.c_str());
    ev.n_events = ptrs.size();
    ev.events = ptrs.data();
    Nebula__Sync__V1__ServerMessage m;
    nebula__sync__v1__server_message__init(&m);
    m.message_case = NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_EVENTS;
    m.events = &ev;
    std::string out(nebula__sync__v1__server_message__get_packed_size(&m), '\0');
    nebula__sync__v1__server_message__pack(&m, reinterpret_cast<uint8_t *>(out.data()));
    return out;
}

// The broker's way: events encoded once, a prefix written per message.
std::string pack_like_the_broker(const std::string &collection, const std::vector<Input> &in)
{
    std::string body;
    for (const Input &i : in) {
        sync_event e{};
        e.id = i.id.c_str();
        e.type = SYNC_EVENT_UPDATE;
        e.document_id = i.doc.c_str();
        e.data = reinterpret_cast<const uint8_t *>(i.data.data());
        e.data_len = i.data.size();
        e.hlc = i.hlc;
        e.client_id = i.client.c_str();
        e.seq = i.seq;
        shared_event *se = sync_wire_encode_event(collection.c_str(), &e);
        body.append(reinterpret_cast<const char *>(se->bytes), se->len);
        shared_event_unref(se);
    }
    std::vector<uint8_t> prefix(SYNC_WIRE_PREFIX_MAX(1024));
    size_t n = sync_wire_events_prefix(prefix.data(), collection.c_str(), collection.size(),
                                       body.size());
    return std::string(reinterpret_cast<const char *>(prefix.data()), n) + body;
}

void expect_same(const std::vector<Input> &in, const Seen &seen)
{
    ASSERT_EQ(seen.seqs.size(), in.size());
    for (size_t i = 0; i < in.size(); i++) {
        EXPECT_EQ(seen.seqs[i], in[i].seq) << i;
        EXPECT_EQ(seen.data[i], in[i].data) << i;
    }
}

TEST(EventsScan, SeesWhatProtobufCEncodes)
{
    std::mt19937_64 rng(7);
    for (size_t n : {0, 1, 2, 17, 256}) {
        std::vector<Input> in = random_inputs(rng, n);
        Seen seen;
        std::string collection;
        ASSERT_EQ(scan(pack_with_protobuf_c("todos", in), &seen, &collection), EVENTS_SCAN_OK);
        EXPECT_EQ(collection, "todos");
        expect_same(in, seen);
    }
}

TEST(EventsScan, SeesWhatTheBrokerSends)
{
    std::mt19937_64 rng(11);
    std::vector<Input> in = random_inputs(rng, 64);
    Seen seen;
    std::string collection;
    ASSERT_EQ(scan(pack_like_the_broker("notes", in), &seen, &collection), EVENTS_SCAN_OK);
    EXPECT_EQ(collection, "notes");
    expect_same(in, seen);
}

TEST(EventsScan, OtherMessagesAreLeftToProtobufC)
{
    Nebula__Sync__V1__Welcome w;
    nebula__sync__v1__welcome__init(&w);
    w.session_id = const_cast<char *>("s-1");
    Nebula__Sync__V1__ServerMessage m;
    nebula__sync__v1__server_message__init(&m);
    m.message_case = NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_WELCOME;
    m.welcome = &w;
    std::string out(nebula__sync__v1__server_message__get_packed_size(&m), '\0');
    nebula__sync__v1__server_message__pack(&m, reinterpret_cast<uint8_t *>(out.data()));
    Seen seen;
    EXPECT_EQ(scan(out, &seen), EVENTS_SCAN_NOT_EVENTS);
    EXPECT_EQ(scan("", &seen), EVENTS_SCAN_NOT_EVENTS);
    EXPECT_TRUE(seen.seqs.empty());
}

TEST(EventsScan, EveryTruncationIsMalformed)
{
    std::mt19937_64 rng(3);
    std::string whole = pack_like_the_broker("c", random_inputs(rng, 5));
    for (size_t n = 1; n < whole.size(); n++) {
        Seen seen;
        EXPECT_EQ(scan(whole.substr(0, n), &seen), EVENTS_SCAN_MALFORMED) << "first " << n << " bytes";
    }
}

TEST(EventsScan, GarbageNeverReadsOutOfBounds)
{
    std::mt19937_64 rng(5);
    for (int round = 0; round < 20000; round++) {
        std::string junk(rng() % 64, '\0');
        for (char &ch : junk)
            ch = static_cast<char>(rng());
        if (!junk.empty() && round % 2)
            junk[0] = static_cast<char>((4 << 3) | 2);   // looks like ServerMessage.events
        Seen seen;
        events_scan_result r = scan(junk, &seen);
        EXPECT_TRUE(r == EVENTS_SCAN_OK || r == EVENTS_SCAN_NOT_EVENTS || r == EVENTS_SCAN_MALFORMED);
    }
}

}  // namespace
