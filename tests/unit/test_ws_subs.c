/* A WebSocket session's subscription table (src/ws/subs.c): entries by
 * channel name through growth, removal and reuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ws/internal.h"

#define N 5000

static void name_of(char *out, size_t cap, int i) { snprintf(out, cap, "chan.%d", i); }

static void add_find_take(void **state) {
  (void)state;
  fc_ws_t ws = {0};
  memcpy(ws.sub_key, "0123456789abcdef", sizeof ws.sub_key);
  fc_ws_session_t s = {.ws = &ws};
  char name[32];
  assert_null(fc__ws_sub_find(&s, "chan.0"));
  assert_null(fc__ws_sub_take(&s, "chan.0"));
  for (int i = 0; i < N; i++) {
    name_of(name, sizeof name, i);
    assert_null(fc__ws_sub_find(&s, name));
    ws_sub_t *e = fc__ws_sub_add(&s, name);
    assert_string_equal(e->name, name);
    assert_ptr_equal(fc__ws_sub_find(&s, name), e);
  }
  assert_int_equal(s.nsubs, N);
  assert_true(s.subs_cap >= N && s.subs_cap <= 2 * N); /* grew by doubling, load at most 1 */
  for (int i = 0; i < N; i++) {                        /* every entry survived the growth */
    name_of(name, sizeof name, i);
    ws_sub_t *e = fc__ws_sub_find(&s, name);
    assert_non_null(e);
    assert_string_equal(e->name, name);
  }
  assert_null(fc__ws_sub_find(&s, "chan."));
  assert_null(fc__ws_sub_find(&s, "chan.50000"));
  for (int i = 0; i < N; i += 2) { /* take the even ones */
    name_of(name, sizeof name, i);
    ws_sub_t *e = fc__ws_sub_take(&s, name);
    assert_non_null(e);
    assert_string_equal(e->name, name);
    free(e);
    assert_null(fc__ws_sub_take(&s, name));
  }
  assert_int_equal(s.nsubs, N / 2);
  for (int i = 0; i < N; i++) {
    name_of(name, sizeof name, i);
    if (i % 2) {
      assert_non_null(fc__ws_sub_find(&s, name));
    } else {
      assert_null(fc__ws_sub_find(&s, name));
    }
  }
  for (int i = 1; i < N; i += 2) {
    name_of(name, sizeof name, i);
    free(fc__ws_sub_take(&s, name));
  }
  assert_int_equal(s.nsubs, 0);
  fc__ws_subs_dispose(&s); /* nothing left to unsubscribe: frees the table */
  assert_null(s.subs);
  assert_int_equal(s.subs_cap, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(add_find_take),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
