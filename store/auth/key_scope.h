// Key scoping: the node stores a chunk of a namespace under a key derived
// from the namespace's key-chain root and the client's key,
//
//   stored key = SHA-256("strata-scope-v1" || namespace root || key)
//
// so that namespaces (and so tenants) have disjoint key spaces on the node:
// a client of one namespace cannot store under, probe or block a key of
// another even when it can compute that key (keys derive from tokens).
#ifndef STRATA_STORE_AUTH_KEY_SCOPE_H_
#define STRATA_STORE_AUTH_KEY_SCOPE_H_

#include <string>
#include <string_view>

#include "store/common/chunk_key.h"

namespace strata::auth {

// Thread-safe; pure.
ChunkKey ScopeKey(const ChunkKey& namespace_root, const ChunkKey& key);

// A name chosen by a client (a scheduler id), scoped to its tenant:
// "TENANT/" and the first 32 hex digits of SHA-256(name). At most 97 bytes
// for a valid tenant name.
std::string ScopeName(std::string_view tenant, std::string_view name);

}  // namespace strata::auth

#endif  // STRATA_STORE_AUTH_KEY_SCOPE_H_
