// test_certs: self-signed certificates generated at test time (OpenSSL 3).
//
// CN=localhost with subjectAltName DNS:localhost, IP:127.0.0.1; ECDSA P-256
// or RSA 2048; written as PEM into a directory the caller owns. Also SHA-256
// fingerprints of a certificate file and of a TLS peer's certificate, so
// tests can tell which certificate a server presented.
#ifndef NEBULA_TESTS_TEST_CERTS_H
#define NEBULA_TESTS_TEST_CERTS_H

#include <openssl/ssl.h>

#include <string>

namespace nebula_test {

enum class KeyType { kEcdsaP256, kRsa2048 };

struct TestCert {
  std::string cert_path;    // PEM certificate
  std::string key_path;     // PEM private key (PKCS#8, mode 0600)
  std::string fingerprint;  // SHA-256 of the DER certificate, lower-case hex
};

// A fresh directory under $TMPDIR (or /tmp); empty string on failure.
std::string MakeTempDir(const std::string &prefix = "nebula-test");
// Removes a directory tree (best effort).
void RemoveTree(const std::string &path);

// Generates a certificate + key as <dir>/<name>.crt and <dir>/<name>.key.
// On failure returns false and sets *error.
bool GenerateSelfSignedCert(const std::string &dir, const std::string &name, KeyType type,
                            TestCert *out, std::string *error = nullptr);

// SHA-256 fingerprint (lower-case hex) of the first PEM certificate in a
// file; empty on failure.
std::string CertFileFingerprint(const std::string &path);
// Of the certificate the peer of an established TLS connection presented.
std::string PeerCertFingerprint(SSL *ssl);
// Of an in-memory X509.
std::string X509Fingerprint(X509 *cert);

// A temp directory removed when this object goes away.
class TempDir {
 public:
  explicit TempDir(const std::string &prefix = "nebula-test") : path_(MakeTempDir(prefix)) {}
  ~TempDir() {
    if (!path_.empty()) RemoveTree(path_);
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  const std::string &path() const { return path_; }
  std::string File(const std::string &name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace nebula_test

#endif
