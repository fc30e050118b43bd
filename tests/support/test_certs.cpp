// test_certs: see test_certs.h. Uses only the OpenSSL 3 EVP/X509 API.
#include "test_certs.h"

#include <ftw.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>

namespace nebula_test {
namespace {

struct FileCloser {
  void operator()(FILE *f) const {
    if (f) fclose(f);
  }
};
using FilePtr = std::unique_ptr<FILE, FileCloser>;

std::string Hex(const unsigned char *d, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; i++) {
    s.push_back(digits[d[i] >> 4]);
    s.push_back(digits[d[i] & 0xF]);
  }
  return s;
}

std::string Errors(const std::string &what) {
  std::string out = what;
  unsigned long e;
  char buf[256];
  while ((e = ERR_get_error()) != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
    out += ": ";
    out += buf;
  }
  return out;
}

bool AddExtension(X509 *cert, int nid, const char *value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION *ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (!ext) return false;
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return ok == 1;
}

}  // namespace

std::string MakeTempDir(const std::string &prefix) {
  const char *base = getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/" + prefix + "-XXXXXX";
  if (!mkdtemp(&tmpl[0])) return "";
  return tmpl;
}

void RemoveTree(const std::string &path) {
  if (path.empty() || path == "/") return;
  nftw(
      path.c_str(),
      [](const char *p, const struct stat *, int, struct FTW *) { return remove(p); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

bool GenerateSelfSignedCert(const std::string &dir, const std::string &name, KeyType type, TestCert *out,
                            std::string *error) {
  std::string err;
  EVP_PKEY *key = type == KeyType::kEcdsaP256 ? EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")
                                               : EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048));
  X509 *cert = X509_new();
  bool ok = false;
  do {
    if (!key || !cert) {
      err = Errors("key generation");
      break;
    }
    X509_set_version(cert, 2);  // v3
    unsigned char serial[16];
    RAND_bytes(serial, sizeof serial);
    serial[0] &= 0x7F;  // positive
    BIGNUM *bn = BN_bin2bn(serial, sizeof serial, nullptr);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 7L * 24 * 3600);
    X509_set_pubkey(cert, key);
    X509_NAME *subject = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char *>("localhost"),
                               -1, -1, 0);
    X509_set_issuer_name(cert, subject);
    if (!AddExtension(cert, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1") ||
        !AddExtension(cert, NID_basic_constraints, "critical,CA:FALSE") ||
        !AddExtension(cert, NID_key_usage, "critical,digitalSignature,keyEncipherment") ||
        !AddExtension(cert, NID_ext_key_usage, "serverAuth")) {
      err = Errors("extensions");
      break;
    }
    if (X509_sign(cert, key, EVP_sha256()) <= 0) {
      err = Errors("sign");
      break;
    }
    std::string cert_path = dir + "/" + name + ".crt";
    std::string key_path = dir + "/" + name + ".key";
    {
      FilePtr f(fopen(key_path.c_str(), "w"));
      if (!f) {
        err = "cannot write " + key_path;
        break;
      }
      fchmod(fileno(f.get()), 0600);
      if (PEM_write_PrivateKey(f.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
        err = Errors("write key");
        break;
      }
    }
    {
      FilePtr f(fopen(cert_path.c_str(), "w"));
      if (!f || PEM_write_X509(f.get(), cert) != 1) {
        err = Errors("write cert " + cert_path);
        break;
      }
    }
    out->cert_path = cert_path;
    out->key_path = key_path;
    out->fingerprint = X509Fingerprint(cert);
    ok = true;
  } while (false);
  X509_free(cert);
  EVP_PKEY_free(key);
  if (!ok && error) *error = err;
  return ok;
}

std::string X509Fingerprint(X509 *cert) {
  if (!cert) return "";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (X509_digest(cert, EVP_sha256(), md, &n) != 1) return "";
  return Hex(md, n);
}

std::string CertFileFingerprint(const std::string &path) {
  FilePtr f(fopen(path.c_str(), "r"));
  if (!f) return "";
  X509 *cert = PEM_read_X509(f.get(), nullptr, nullptr, nullptr);
  std::string fp = X509Fingerprint(cert);
  X509_free(cert);
  return fp;
}

std::string PeerCertFingerprint(SSL *ssl) {
  if (!ssl) return "";
  X509 *cert = SSL_get1_peer_certificate(ssl);
  std::string fp = X509Fingerprint(cert);
  X509_free(cert);
  return fp;
}

}  // namespace nebula_test
