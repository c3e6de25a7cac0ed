/* `flowcast --version`: this build and the libraries it runs with. */
#include <jansson.h>
#include <llhttp.h>
#include <openssl/crypto.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>
#include <wslay/wslay.h>

#include "cli/cli.h"
#include "fc_version.h"
#include "store/store.h"

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

int fc_cli_version(int argc, char **argv) {
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("Usage: flowcast version (or flowcast --version)\n\n"
             "Prints the version, the git commit and build it came from, and the versions of the\n"
             "libraries it runs with (those loaded at run time where the library says, else those\n"
             "it was built against).\n");
      return FC_EXIT_OK;
    }
    fprintf(stderr, "flowcast version: unexpected argument '%s'\n", argv[i]);
    return FC_EXIT_USAGE;
  }
  printf("flowcast %s (%s)\n", FC_VERSION, FC_GIT_DESCRIBE);
  printf("commit:    %s\n", FC_GIT_COMMIT);
  printf("build:     %s, sanitizers %s, %s\n", FC_BUILD_TYPE, FC_SANITIZERS,
#if defined(__clang__)
         "clang " __clang_version__
#elif defined(__GNUC__)
         "gcc " __VERSION__
#else
         "unknown compiler"
#endif
  );
  printf("libraries:\n");
  printf("  libuv     %s\n", uv_version_string());
  printf("  sqlite    %s\n", fc_store_sqlite_version());
  printf("  jansson   %s\n", jansson_version_str());
#ifdef OPENSSL_VERSION_STRING
  printf("  openssl   %s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
#else
  printf("  openssl   %s\n", OpenSSL_version(OPENSSL_VERSION));
#endif
  printf("  libjwt    %s (built against)\n", *FC_JWT_VERSION ? FC_JWT_VERSION : "unknown");
  printf("  libsodium %s\n", sodium_version_string());
  printf("  llhttp    %s (compiled in)\n",
         STRINGIFY(LLHTTP_VERSION_MAJOR) "." STRINGIFY(LLHTTP_VERSION_MINOR) "." STRINGIFY(LLHTTP_VERSION_PATCH));
  printf("  wslay     %s (built against)\n", WSLAY_VERSION);
  printf("  liburing  %s (built against)\n", *FC_URING_VERSION ? FC_URING_VERSION : "unknown");
  return FC_EXIT_OK;
}
