// Fuzzes the safetensors reader (client/runtime/safetensors.h): the input is
// written to a temporary file and opened. Any file opens or is refused with
// InvalidArgument. Every tensor of a file it accepts lies inside the file
// and has as many bytes as its shape and dtype say; all of them are read.
// A file of this process id under $TMPDIR (or /tmp) is rewritten per input.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "client/runtime/safetensors.h"

namespace {

void Check(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "safetensors_fuzzer: %s\n", what);
  std::abort();
}

const std::string& TempPath() {
  static const std::string path = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir != nullptr && *dir != '\0' ? dir : "/tmp") + "/strata_safetensors_fuzz." +
           std::to_string(getpid());
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace strata::runtime;
  {
    std::ofstream out(TempPath(), std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    Check(static_cast<bool>(out), "cannot write the temporary file");
  }
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(TempPath());
  if (!file.ok()) {
    Check(file.status().code() == absl::StatusCode::kInvalidArgument,
          "an open error other than InvalidArgument");
    return 0;
  }
  static volatile unsigned sink = 0;
  for (const std::string& name : (*file)->names()) {
    absl::StatusOr<TensorView> t = (*file)->Get(name);
    Check(t.ok(), "a listed tensor is missing");
    uint64_t elements = 1;
    for (int64_t d : t->shape) {
      Check(d >= 0, "negative dimension");
      elements *= static_cast<uint64_t>(d);
    }
    Check(elements * SafetensorsDtypeBytes(t->dtype) == t->bytes.size(), "size mismatch");
    Check(SafetensorsDtypeBytes(t->dtype) != 0, "unsupported dtype accepted");
    Check(t->bytes.size() <= size, "tensor larger than the file");
    // Touch every byte: a view past the mapped file faults here.
    unsigned sum = 0;
    for (std::byte b : t->bytes) sum += static_cast<unsigned>(b);
    sink += sum;
  }
  return 0;
}
