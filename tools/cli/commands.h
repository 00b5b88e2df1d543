// The `strata` subcommands that talk to a running store node. Each takes the
// arguments after the subcommand's name, prints to stdout/stderr and returns
// the process exit code: 0 success, 1 failure (the message names the
// problem), 2 usage error. `--help` documents every flag.
#ifndef STRATA_TOOLS_CLI_COMMANDS_H_
#define STRATA_TOOLS_CLI_COMMANDS_H_

#include <string>
#include <vector>

namespace strata::cli {

// strata put FILE...: stores files as keyed chunks (commands_data.cc).
int PutCommand(const std::vector<std::string>& args);
// strata get FILE|KEY... --out PATH: loads chunks back, verifying.
int GetCommand(const std::vector<std::string>& args);
// strata lookup FILE|KEY...: per-key tier and the cached prefix.
int LookupCommand(const std::vector<std::string>& args);
// strata stats: the node's counters, sorted, as "key: value".
int StatsCommand(const std::vector<std::string>& args);
// strata cluster: the members of a cluster, their fill and health
// (commands_cluster.cc).
int ClusterCommand(const std::vector<std::string>& args);
int RemoveNamespaceCommand(const std::vector<std::string>& args);
// strata bench: a load generator (commands_bench.cc).
int BenchCommand(const std::vector<std::string>& args);
// strata replay: a conversation trace with scheduler hints (commands_replay.cc).
int ReplayCommand(const std::vector<std::string>& args);

}  // namespace strata::cli

#endif  // STRATA_TOOLS_CLI_COMMANDS_H_
