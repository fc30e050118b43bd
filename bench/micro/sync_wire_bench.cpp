// Micro-benchmarks of the sync protocol's protobuf work: encoding one
// accepted event into its shared, send-as-is form (broker/sync_wire.h), done
// once per event whatever the subscriber count; and protobuf-c decoding a
// ServerMessage with an Events batch of 64 events, which every subscriber
// (the client library, the load tool) does on receipt.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>
#include <vector>

#include "shared_event.h"   // before the extern "C" block: it includes <atomic> in C++

extern "C" {
#include "nebula_sync.pb-c.h"
#include "sync_wire.h"
}

namespace {

const char kCollection[] = "nebula-sync-bench";
const size_t kDocumentSize = 200;   // nebula-sync-bench's default --size
const size_t kBatch = 64;

// A 200-byte JSON document shaped like the load tool's.
std::string document()
{
    std::string doc = "{\"ts\":\"1732579200123456789\",\"pad\":\"";
    doc.append(kDocumentSize - doc.size() - 2, 'x');
    return doc + "\"}";
}

sync_event sample_event(const std::string &doc, uint64_t seq)
{
    sync_event e{};
    e.id = "7c9e6679-7425-40de-944b-e07fc1f90ae7";
    e.type = SYNC_EVENT_UPDATE;
    e.document_id = "doc-17";
    e.data = reinterpret_cast<const uint8_t *>(doc.data());
    e.data_len = doc.size();
    e.timestamp_ms = 1732579200123;
    e.hlc = 1732579200123ull << 16;
    e.client_id = "bench-publisher-0";
    e.seq = seq;
    e.origin = 7;
    return e;
}

void BM_SyncWireEncodeEvent(benchmark::State &state)
{
    const std::string doc = document();
    sync_event e = sample_event(doc, 12345);
    size_t bytes = 0;
    for (auto _ : state) {
        shared_event *se = sync_wire_encode_event(kCollection, &e);
        if (!se) {
            state.SkipWithError("out of memory");
            break;
        }
        bytes = se->len;
        benchmark::DoNotOptimize(se->bytes[0]);
        shared_event_unref(se);
    }
    state.SetItemsProcessed(state.iterations());
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(bytes));
}
BENCHMARK(BM_SyncWireEncodeEvent);

// The bytes of ServerMessage{events: Events{collection, 64 events}}, built
// the way the broker sends them: prefix + pre-encoded events.
std::vector<uint8_t> events_message()
{
    const std::string doc = document();
    std::vector<uint8_t> body;
    for (uint64_t seq = 1; seq <= kBatch; seq++) {
        sync_event e = sample_event(doc, seq);
        shared_event *se = sync_wire_encode_event(kCollection, &e);
        if (!se)
            return {};
        body.insert(body.end(), se->bytes, se->bytes + se->len);
        shared_event_unref(se);
    }
    std::vector<uint8_t> msg(SYNC_WIRE_PREFIX_MAX(sizeof kCollection - 1));
    msg.resize(sync_wire_events_prefix(msg.data(), kCollection, sizeof kCollection - 1, body.size()));
    msg.insert(msg.end(), body.begin(), body.end());
    return msg;
}

bool is_events_batch(const Nebula__Sync__V1__ServerMessage *m)
{
    return m && m->message_case == NEBULA__SYNC__V1__SERVER_MESSAGE__MESSAGE_EVENTS &&
           m->events->n_events == kBatch;
}

void BM_ServerMessageUnpackEvents64(benchmark::State &state)
{
    const std::vector<uint8_t> msg = events_message();
    for (auto _ : state) {
        Nebula__Sync__V1__ServerMessage *m =
            nebula__sync__v1__server_message__unpack(nullptr, msg.size(), msg.data());
        if (!is_events_batch(m)) {
            state.SkipWithError("the encoded batch did not decode as 64 events");
            nebula__sync__v1__server_message__free_unpacked(m, nullptr);
            break;
        }
        benchmark::DoNotOptimize(m->events->events[kBatch - 1]->seq);
        nebula__sync__v1__server_message__free_unpacked(m, nullptr);
    }
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(kBatch));
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(msg.size()));
}
BENCHMARK(BM_ServerMessageUnpackEvents64);

}  // namespace
