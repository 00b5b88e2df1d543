#include "client/runtime/safetensors.h"

#include <fcntl.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace strata::runtime {
namespace {

constexpr uint64_t kMaxHeaderBytes = uint64_t{100} << 20;

absl::Status Bad(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": not a valid safetensors file: ", what));
}

absl::StatusOr<int64_t> Count(const google::protobuf::Value& v) {
  if (v.kind_case() != google::protobuf::Value::kNumberValue || v.number_value() < 0 ||
      v.number_value() != std::floor(v.number_value()) || v.number_value() > 9.0e15) {
    return absl::InvalidArgumentError("not a count");
  }
  return static_cast<int64_t>(v.number_value());
}

}  // namespace

size_t SafetensorsDtypeBytes(std::string_view dtype) {
  if (dtype == "BF16" || dtype == "F16" || dtype == "I16" || dtype == "U16") return 2;
  if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
  if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
  if (dtype == "U8" || dtype == "I8" || dtype == "BOOL") return 1;
  return 0;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) munmap(map_, map_bytes_);
}

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) return absl::NotFoundError(absl::StrCat(path, ": no such file"));
    return absl::PermissionDeniedError(absl::StrCat(path, ": ", std::strerror(err)));
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat(path, ": fstat: ", std::strerror(errno)));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    close(fd);
    return Bad(path, "shorter than its 8-byte header length");
  }
  void* map = mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return absl::InternalError(absl::StrCat(path, ": mmap: ", std::strerror(errno)));
  std::unique_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->map_ = map;
  file->map_bytes_ = size;
  const auto* bytes = static_cast<const std::byte*>(map);
  uint64_t header_bytes = 0;
  std::memcpy(&header_bytes, bytes, 8);  // little-endian hosts only
  if (header_bytes > kMaxHeaderBytes || header_bytes > size - 8) {
    return Bad(path, absl::StrCat("header length ", header_bytes, " exceeds the file"));
  }
  const std::string json(reinterpret_cast<const char*>(bytes + 8), header_bytes);
  google::protobuf::Struct header;
  if (!google::protobuf::util::JsonStringToMessage(json, &header).ok()) {
    return Bad(path, "the header is not a JSON object");
  }
  const uint64_t data_begin = 8 + header_bytes;
  const uint64_t data_bytes = size - data_begin;
  for (const auto& [name, value] : header.fields()) {
    if (name == "__metadata__") continue;
    if (value.kind_case() != google::protobuf::Value::kStructValue) {
      return Bad(path, absl::StrCat("entry '", name, "' is not an object"));
    }
    const auto& f = value.struct_value().fields();
    auto dt = f.find("dtype");
    auto sh = f.find("shape");
    auto off = f.find("data_offsets");
    if (dt == f.end() || sh == f.end() || off == f.end() ||
        dt->second.kind_case() != google::protobuf::Value::kStringValue ||
        sh->second.kind_case() != google::protobuf::Value::kListValue ||
        off->second.kind_case() != google::protobuf::Value::kListValue ||
        off->second.list_value().values_size() != 2) {
      return Bad(path, absl::StrCat("tensor '", name, "' lacks dtype, shape or data_offsets"));
    }
    TensorView t;
    t.dtype = dt->second.string_value();
    const size_t elem = SafetensorsDtypeBytes(t.dtype);
    if (elem == 0) return Bad(path, absl::StrCat("tensor '", name, "' has dtype ", t.dtype));
    uint64_t elements = 1;
    for (const auto& d : sh->second.list_value().values()) {
      absl::StatusOr<int64_t> n = Count(d);
      if (!n.ok()) return Bad(path, absl::StrCat("tensor '", name, "' has a bad shape"));
      t.shape.push_back(*n);
      if (*n != 0 && elements > (uint64_t{1} << 50) / static_cast<uint64_t>(*n)) {
        return Bad(path, absl::StrCat("tensor '", name, "' is too large"));
      }
      elements *= static_cast<uint64_t>(*n);
    }
    absl::StatusOr<int64_t> begin = Count(off->second.list_value().values(0));
    absl::StatusOr<int64_t> end = Count(off->second.list_value().values(1));
    if (!begin.ok() || !end.ok() || *begin > *end || static_cast<uint64_t>(*end) > data_bytes) {
      return Bad(path, absl::StrCat("tensor '", name, "' has data_offsets outside the file"));
    }
    if (static_cast<uint64_t>(*end - *begin) != elements * elem) {
      return Bad(path, absl::StrCat("tensor '", name, "' has ", *end - *begin,
                                    " bytes for its shape and dtype (", elements * elem, ")"));
    }
    t.bytes = std::span<const std::byte>(bytes + data_begin + *begin, static_cast<size_t>(*end - *begin));
    file->tensors_.emplace(name, std::move(t));
  }
  return file;
}

absl::StatusOr<TensorView> SafetensorsFile::Get(std::string_view name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) {
    return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", std::string(name), "'"));
  }
  return it->second;
}

absl::StatusOr<TensorView> SafetensorsFile::Get(std::string_view name, std::string_view dtype,
                                                std::span<const int64_t> shape) const {
  absl::StatusOr<TensorView> t = Get(name);
  if (!t.ok()) return t;
  if (t->dtype != dtype || !std::equal(t->shape.begin(), t->shape.end(), shape.begin(), shape.end())) {
    std::string want, got;
    for (int64_t d : shape) absl::StrAppend(&want, want.empty() ? "" : ",", d);
    for (int64_t d : t->shape) absl::StrAppend(&got, got.empty() ? "" : ",", d);
    return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", std::string(name), "' is ",
                                                   t->dtype, "[", got, "], expected ",
                                                   std::string(dtype), "[", want, "]"));
  }
  return t;
}

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [name, t] : tensors_) out.push_back(name);
  return out;
}

absl::Status WriteSafetensors(const std::string& path,
                              const std::map<std::string, TensorView>& tensors) {
  std::string header = "{";
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    uint64_t elements = 1;
    for (int64_t d : t.shape) elements *= static_cast<uint64_t>(d);
    if (elements * SafetensorsDtypeBytes(t.dtype) != t.bytes.size() ||
        SafetensorsDtypeBytes(t.dtype) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("safetensors: tensor '", name, "' bytes do not match its shape and dtype"));
    }
    std::string shape;
    for (int64_t d : t.shape) absl::StrAppend(&shape, shape.empty() ? "" : ",", d);
    absl::StrAppend(&header, header.size() > 1 ? "," : "", "\"", name, "\":{\"dtype\":\"",
                    t.dtype, "\",\"shape\":[", shape, "],\"data_offsets\":[", offset, ",",
                    offset + t.bytes.size(), "]}");
    offset += t.bytes.size();
  }
  header += "}";
  while (header.size() % 8 != 0) header += ' ';
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t n = header.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  for (const auto& [name, t] : tensors) {
    out.write(reinterpret_cast<const char*>(t.bytes.data()), static_cast<std::streamsize>(t.bytes.size()));
  }
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

}  // namespace strata::runtime
