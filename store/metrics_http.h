// A small HTTP endpoint (Debian's cpp-httplib) serving GET /metrics with the
// page a callback renders (Prometheus text format 0.0.4).
#ifndef STRATA_STORE_METRICS_HTTP_H_
#define STRATA_STORE_METRICS_HTTP_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace strata::store {

class MetricsHttpServer {
 public:
  // Listens on `address` ("host:port"; port 0 picks one) and serves
  // `render()` at /metrics from a thread of its own. InvalidArgument for a
  // malformed address; Unavailable when it cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& address, std::function<std::string()> render);
  virtual ~MetricsHttpServer() = default;
  virtual int port() const = 0;
  // Stops listening and joins the thread; idempotent.
  virtual void Stop() = 0;
};

}  // namespace strata::store

#endif  // STRATA_STORE_METRICS_HTTP_H_
