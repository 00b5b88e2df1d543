#include "transport/ucs_status.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace strata::transport {

absl::Status FromUcsStatus(ucs_status_t status, std::string_view context) {
  if (status == UCS_OK) return absl::OkStatus();
  std::string message = absl::StrCat("UCX: ", ucs_status_string(status));
  if (!context.empty()) {
    message = absl::StrCat(absl::string_view(context.data(), context.size()),
                           ": ", message);
  }
  if (UCS_IS_LINK_ERROR(status) || UCS_IS_ENDPOINT_ERROR(status)) {
    return absl::UnavailableError(message);
  }
  switch (status) {
    case UCS_ERR_NO_MEMORY:
      return absl::ResourceExhaustedError(message);
    case UCS_ERR_UNREACHABLE:
    case UCS_ERR_ENDPOINT_TIMEOUT:
    case UCS_ERR_CONNECTION_RESET:
    case UCS_ERR_NOT_CONNECTED:
    case UCS_ERR_REJECTED:
      return absl::UnavailableError(message);
    case UCS_ERR_TIMED_OUT:
      return absl::DeadlineExceededError(message);
    case UCS_ERR_INVALID_PARAM:
    case UCS_ERR_INVALID_ADDR:
      return absl::InvalidArgumentError(message);
    case UCS_ERR_CANCELED:
      return absl::CancelledError(message);
    case UCS_ERR_UNSUPPORTED:
    case UCS_ERR_NOT_IMPLEMENTED:
      return absl::UnimplementedError(message);
    default:
      return absl::InternalError(message);
  }
}

}  // namespace strata::transport
