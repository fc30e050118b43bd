// Micro-benchmarks of the RFC 6455 frame codec (broker/ws_frame.h): the
// header every outgoing message gets, the parse (with unmasking) every
// client message goes through, and masking on its own.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

extern "C" {
#include "ws_frame.h"
}

namespace {

const uint8_t kMask[4] = {0x37, 0xfa, 0x21, 0x3d};

// A complete, masked client BINARY frame: what the broker reads.
std::vector<uint8_t> masked_frame(size_t payload_len)
{
    std::vector<uint8_t> frame(WS_MAX_HEADER_LEN + payload_len);
    size_t header = ws_frame_header_write(frame.data(), WS_OP_BINARY, true, payload_len, kMask);
    for (size_t i = 0; i < payload_len; i++)
        frame[header + i] = static_cast<uint8_t>(i);
    ws_mask_apply(frame.data() + header, payload_len, kMask, 0);
    frame.resize(header + payload_len);
    return frame;
}

// Header of one frame: unmasked (the broker's frames) or masked (a client's).
void BM_WsFrameHeaderWrite(benchmark::State &state)
{
    uint64_t payload_len = static_cast<uint64_t>(state.range(0));
    const uint8_t *mask = state.range(1) ? kMask : nullptr;
    uint8_t out[WS_MAX_HEADER_LEN];
    for (auto _ : state) {
        benchmark::DoNotOptimize(payload_len);
        size_t n = ws_frame_header_write(out, WS_OP_BINARY, true, payload_len, mask);
        benchmark::DoNotOptimize(n);
        benchmark::ClobberMemory();
    }
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WsFrameHeaderWrite)->ArgNames({"len", "masked"})->ArgsProduct({{100, 1000, 70000}, {0, 1}});

// Server-role parse of one whole masked frame: header checks plus unmasking
// the payload in place (len 0 is the header alone). Unmasking the same
// buffer again only flips it back, which a binary frame does not mind.
void BM_WsReaderNextMasked(benchmark::State &state)
{
    std::vector<uint8_t> frame = masked_frame(static_cast<size_t>(state.range(0)));
    ws_reader reader;
    ws_reader_init(&reader, WS_ROLE_SERVER, 1u << 20);
    ws_frame out;
    for (auto _ : state) {
        if (ws_reader_next(&reader, frame.data(), frame.size(), &out) != WS_READ_FRAME) {
            state.SkipWithError("ws_reader_next did not return a frame");
            break;
        }
        benchmark::DoNotOptimize(out.payload);
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(frame.size()));
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WsReaderNextMasked)->ArgName("len")->Arg(0)->Arg(125)->Arg(1024)->Arg(16384);

void BM_WsMaskApply(benchmark::State &state)
{
    std::vector<uint8_t> data(static_cast<size_t>(state.range(0)), 0x5a);
    for (auto _ : state) {
        ws_mask_apply(data.data(), data.size(), kMask, 0);
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(state.iterations() * state.range(0));
}
BENCHMARK(BM_WsMaskApply)->ArgName("len")->Arg(16)->Arg(256)->Arg(4096)->Arg(65536);

}  // namespace
