// Fuzzes the Hugging Face config.json reader (client/runtime/llama_config.h):
// LlamaConfig::FromHfJson on any bytes returns a config or InvalidArgument.
// A config it accepts passes Validate, and everything derived from it (the
// dimensions, the parameter count, the namespace of its KV) is computed
// without overflow (UBSan aborts on signed overflow).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "client/runtime/llama_config.h"

namespace {

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "llama_config_fuzzer: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using strata::runtime::LlamaConfig;
  const std::string_view json(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<LlamaConfig> config = LlamaConfig::FromHfJson(json);
  if (!config.ok()) {
    Check(config.status().code() == absl::StatusCode::kInvalidArgument,
          "an error other than InvalidArgument");
    return 0;
  }
  Check(config->Validate().ok(), "accepted a config that Validate refuses");
  Check(config->q_dim() > 0 && config->kv_dim() > 0, "non-positive dimensions");
  Check(config->NumParameters() > 0, "non-positive parameter count");
  const strata::NamespaceSpec spec = config->Namespace("fuzz", 64);
  if (spec.Validate().ok()) {
    Check(config->CheckNamespace(spec).ok(), "the config refuses its own namespace");
  }
  (void)config->Layout(64);
  (void)config->DebugString();
  return 0;
}
