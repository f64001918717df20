// The parts of the system's OpenSSL libcrypto (Debian: libssl-dev) that pilegate uses:
// the EVP cipher interface for 3DES (swift-crypto has no 3DES) and SHA-256 for key fingerprints.
#ifndef PILEGATE_CLIBCRYPTO_SHIM_H
#define PILEGATE_CLIBCRYPTO_SHIM_H

#include <openssl/evp.h>
#include <openssl/err.h>
#include <openssl/crypto.h>

#endif
