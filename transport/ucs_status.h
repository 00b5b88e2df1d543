// The one converter from UCX status codes to absl::Status.
#ifndef STRATA_TRANSPORT_UCS_STATUS_H_
#define STRATA_TRANSPORT_UCS_STATUS_H_

#include <ucs/type/status.h>

#include <string_view>

#include "absl/status/status.h"

namespace strata::transport {

// Maps a UCX status to the most specific absl code: UCS_OK -> OK;
// NO_MEMORY -> ResourceExhausted; UNREACHABLE, ENDPOINT_TIMEOUT,
// CONNECTION_RESET, NOT_CONNECTED, REJECTED and every link/endpoint failure
// code -> Unavailable; TIMED_OUT -> DeadlineExceeded; INVALID_PARAM,
// INVALID_ADDR -> InvalidArgument; CANCELED -> Cancelled; UNSUPPORTED,
// NOT_IMPLEMENTED -> Unimplemented; anything else -> Internal. The message carries UCX's text and, when given, `context`.
absl::Status FromUcsStatus(ucs_status_t status, std::string_view context = {});

}  // namespace strata::transport

#endif  // STRATA_TRANSPORT_UCS_STATUS_H_
