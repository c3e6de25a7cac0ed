/* `flowcast users add|passwd|del|list`: accounts in the data directory. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth/users.h"
#include "cli/cli.h"

static void users_usage(FILE *out) {
  fprintf(out, "Usage: flowcast users COMMAND [--data DIR | --redis URL] ...\n\n"
               "Manages accounts in DIR/flowcast.db (default ./data, or FLOWCAST_DATA), or with --redis\n"
               "(or FLOWCAST_REDIS) those of the cluster using that Redis; works while the server runs.\n"
               "Passwords are read from FLOWCAST_PASSWORD, or else from one line on standard input, so\n"
               "they stay out of the shell history.\n\n"
               "  add NAME [--admin]   create a user (--admin may list channels, mint tokens, ...)\n"
               "  passwd NAME          set a new password\n"
               "  del NAME             remove a user\n"
               "  list                 show users\n\n"
               "DIR must exist (the first `flowcast serve` makes it): a missing one is an error, exit 4.\n"
               "Exit status: 0 done, 1 the database refused, 2 a bad name or password (or none given),\n"
               "4 no such user or data directory, 5 Redis unreachable.\n");
}

/* The password from FLOWCAST_PASSWORD or one line of stdin. Returns 0, or
 * -1 after saying what is missing. */
static int read_password(char *out, size_t len) {
  const char *env = getenv("FLOWCAST_PASSWORD");
  if (env && *env) {
    snprintf(out, len, "%s", env);
  } else {
    if (!fgets(out, (int)len, stdin)) {
      fprintf(stderr,
              "flowcast users: no password given: standard input was empty\n"
              "flowcast users: hint: set FLOWCAST_PASSWORD, or give the password as one line on standard input\n");
      return -1;
    }
    out[strcspn(out, "\r\n")] = '\0';
  }
  if (strlen(out) < 8) {
    fprintf(stderr, "flowcast users: the password must be at least 8 characters (it has %zu)\n", strlen(out));
    return -1;
  }
  return 0;
}

static void print_user(void *ud, const char *name, bool admin, int64_t created_ms) {
  (void)ud;
  time_t t = (time_t)(created_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  char when[32];
  strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
  printf("%-24s %-6s created %s UTC\n", name, admin ? "admin" : "user", when);
}

/* Runs one users subcommand on an open database. */
static int run_users(fc_users_t *u, const char *cmd, const char *name, bool admin) {
  char pw[1024];
  int rc = 0;
  if (!strcmp(cmd, "list")) return fc_users_list(u, print_user, NULL) == 0 ? FC_EXIT_OK : FC_EXIT_ERROR;
  if (!strcmp(cmd, "add") || !strcmp(cmd, "passwd")) {
    if (read_password(pw, sizeof pw) < 0) return FC_EXIT_USAGE;
    rc = !strcmp(cmd, "add") ? fc_users_add(u, name, pw, admin) : fc_users_passwd(u, name, pw);
  } else {
    rc = fc_users_del(u, name);
  }
  if (rc == -EEXIST)
    fprintf(stderr, "flowcast users: %s already exists (change the password with: users passwd %s)\n", name, name);
  if (rc == -ENOENT) fprintf(stderr, "flowcast users: no user %s (see: flowcast users list)\n", name);
  if (rc == -EIO || rc == -ENOMEM) fprintf(stderr, "flowcast users: the database refused the change\n");
  if (rc == 0) printf("%s: %s\n", cmd, name);
  return rc == 0 ? FC_EXIT_OK : rc == -ENOENT ? FC_EXIT_NOT_FOUND : FC_EXIT_ERROR;
}

int fc_cli_users(int argc, char **argv) {
  const char *dir = getenv("FLOWCAST_DATA"), *cmd = NULL, *name = NULL, *from = "from FLOWCAST_DATA";
  if (!dir || !*dir) dir = "./data", from = "the default";
  const char *redis = getenv("FLOWCAST_REDIS");
  bool admin = false;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      users_usage(stdout);
      return 0;
    } else if (!strcmp(argv[i], "--data") && i + 1 < argc) {
      dir = argv[++i], from = "from --data";
    } else if (!strncmp(argv[i], "--data=", 7)) {
      dir = argv[i] + 7, from = "from --data";
    } else if (!strcmp(argv[i], "--redis") && i + 1 < argc) {
      redis = argv[++i];
    } else if (!strncmp(argv[i], "--redis=", 8)) {
      redis = argv[i] + 8;
    } else if (!strcmp(argv[i], "--admin")) {
      admin = true;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "flowcast users: unknown option '%s' (see --help)\n", argv[i]);
      return FC_EXIT_USAGE;
    } else if (!cmd) {
      cmd = argv[i];
    } else if (!name) {
      name = argv[i];
    } else {
      fprintf(stderr, "flowcast users: unexpected argument '%s' (see --help)\n", argv[i]);
      return FC_EXIT_USAGE;
    }
  }
  bool known = cmd && (!strcmp(cmd, "add") || !strcmp(cmd, "passwd") || !strcmp(cmd, "del") || !strcmp(cmd, "list"));
  if (!known || (strcmp(cmd, "list") && !name)) {
    users_usage(stderr);
    return FC_EXIT_USAGE;
  }
  if (name && !fc_user_name_valid(name)) {
    fprintf(stderr, "flowcast users: '%s' is not a user name: a name is 1 to 64 of [A-Za-z0-9._@-]\n", name);
    return FC_EXIT_USAGE;
  }
  bool cluster = redis && *redis;
  int rc = cluster ? 0 : fc_cli_data_dir_check("users", dir, from);
  if (rc) return rc;
  char err[512];
  fc_users_t *u = fc_users_open(dir, redis, err, sizeof err);
  if (!u) {
    fprintf(stderr, "flowcast users: %s\n", err);
    return cluster ? FC_EXIT_UNAVAILABLE : FC_EXIT_ERROR;
  }
  rc = run_users(u, cmd, name, admin);
  fc_users_close(u);
  return rc;
}
