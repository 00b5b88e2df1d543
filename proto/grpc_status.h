// The one converter between grpc::Status and absl::Status (both directions;
// the codes are the same canonical set).
#ifndef STRATA_PROTO_GRPC_STATUS_H_
#define STRATA_PROTO_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace strata {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace strata

#endif  // STRATA_PROTO_GRPC_STATUS_H_
