// Micro-benchmarks of UTF-8 validation (broker/utf8.h), which every TEXT
// message and every close reason goes through: pure ASCII, and text where
// most characters take 2 to 4 bytes.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <string>

extern "C" {
#include "utf8.h"
}

namespace {

// `size` bytes of `unit` repeated, cut at a character boundary.
std::string repeat_to(const std::string &unit, size_t size)
{
    std::string s;
    while (s.size() + unit.size() <= size)
        s += unit;
    return s;
}

void run_utf8(benchmark::State &state, const std::string &text)
{
    const uint8_t *bytes = reinterpret_cast<const uint8_t *>(text.data());
    for (auto _ : state) {
        bool ok = utf8_is_valid(bytes, text.size());
        if (!ok) {
            state.SkipWithError("sample text rejected");
            break;
        }
        benchmark::DoNotOptimize(ok);
    }
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(text.size()));
}

void BM_Utf8ValidAscii(benchmark::State &state)
{
    run_utf8(state, repeat_to("{\"title\":\"plain ascii text\",\"n\":42}", static_cast<size_t>(state.range(0))));
}
BENCHMARK(BM_Utf8ValidAscii)->ArgName("len")->Arg(64)->Arg(4096)->Arg(65536);

void BM_Utf8ValidMultibyte(benchmark::State &state)
{
    // 2-byte (é, ö), 3-byte (✓, 中) and 4-byte (😀) sequences among ASCII.
    run_utf8(state, repeat_to("h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93 \xe4\xb8\xad \xf0\x9f\x98\x80 ",
                              static_cast<size_t>(state.range(0))));
}
BENCHMARK(BM_Utf8ValidMultibyte)->ArgName("len")->Arg(64)->Arg(4096)->Arg(65536);

}  // namespace
