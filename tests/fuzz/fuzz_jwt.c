/* Token checks on hostile input. The first byte picks the mode:
 * even: the rest is a token as a client would send it;
 * odd:  the rest is a claims object, signed with the server's key, so the
 *       claim checks (exp, nbf, the flowcast rights) see any JSON. */
#include <jwt.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"

static fc_auth_t *auth;
static const unsigned char key[32] = "0123456789abcdef0123456789abcdef";

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
  if (!auth) {
    char err[256];
    auth = fc_auth_new(&(fc_auth_opts_t){.secret = key, .secret_len = sizeof key}, err, sizeof err);
    if (!auth) abort();
  }
  if (size < 1 || size > 8192) return 0;
  char *text = fc_xstrndup((const char *)data + 1, size - 1);
  char *token = text;
  if (data[0] & 1) {
    jwt_t *jwt = NULL;
    token = NULL;
    if (jwt_new(&jwt) == 0 && jwt_add_grants_json(jwt, text) == 0 &&
        jwt_set_alg(jwt, JWT_ALG_HS256, key, sizeof key) == 0)
      token = jwt_encode_str(jwt);
    jwt_free(jwt);
  }
  if (token) {
    fc_claims_t c;
    char why[256];
    if (fc_auth_verify(auth, token, 1700000000, &c, why, sizeof why) == 0) {
      if (c.exp <= 1700000000) abort(); /* an accepted token is never expired */
      if (!c.sub) abort();
      fc_claims_dispose(&c);
    } else if (!why[0]) {
      abort();
    }
  }
  if (token != text) free(token);
  free(text);
  return 0;
}
