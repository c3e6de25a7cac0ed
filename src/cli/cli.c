/* Command dispatch and help. */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/config.h"
#include "store/store.h"

static void usage(FILE *out) {
  fprintf(out, "flowcast: a real-time event server: publish to channels over HTTP, subscribe over SSE\n\n"
               "Usage: flowcast COMMAND [options]\n\n"
               "Commands:\n"
               "  serve     run the server (flowcast serve --help for its options)\n"
               "  backup    copy the database into one consistent file, even while serving\n"
               "  users     add, change, remove and list users (flowcast users --help)\n"
               "  publish   publish an event: flowcast publish CHANNEL [DATA|-]\n"
               "  subscribe follow channels, reconnecting and resuming: flowcast subscribe CHANNEL...\n"
               "  token     mint a scoped token: flowcast token --sub NAME --publish P --subscribe P\n"
               "  start     start a workflow's job and follow it; exit 0 only for Done\n"
               "  version   show the version, commit, build and libraries (also --version)\n"
               "  help      show this help\n\n"
               "Client commands take --url (FLOWCAST_URL, default http://127.0.0.1:8000) and --token\n"
               "(FLOWCAST_TOKEN); each command has --help. The manual: man flowcast.\n\n");
  fc_cli_exit_help(out);
  fprintf(out, "\n"
               "Quick start:\n"
               "  flowcast serve --listen 127.0.0.1:8000\n"
               "  curl -N http://127.0.0.1:8000/api/v1/channels/news/sse\n"
               "  curl -d '{\"hello\":\"world\"}' http://127.0.0.1:8000/api/v1/channels/news/events\n");
}

void fc_cli_exit_help(FILE *out) {
  fprintf(out, "Exit status:\n"
               "  0  success\n"
               "  1  any other error\n"
               "  2  usage: a bad command line or input (checked before anything is sent)\n"
               "  3  authentication: no token, a bad or expired one, or one without the right (401, 403)\n"
               "  4  not found: no such channel, workflow, job, user or data directory (404)\n"
               "  5  the server is unreachable, or its storage is unavailable (503)\n"
               "  6  a followed job ended with a status other than Done\n");
}

int fc_cli_data_dir_check(const char *cmd, const char *dir, const char *from) {
  struct stat st;
  int e = stat(dir, &st) == 0 ? (S_ISDIR(st.st_mode) ? 0 : ENOTDIR) : errno;
  if (!e) return 0;
  fprintf(stderr, "flowcast %s: no data directory at %s (%s): %s\n", cmd, dir, from, strerror(e));
  fprintf(stderr,
          "flowcast %s: hint: name the server's data directory with --data DIR or FLOWCAST_DATA; "
          "it is made by the first `flowcast serve`, and is not created here\n",
          cmd);
  return FC_EXIT_NOT_FOUND;
}

static int has_help(int argc, char **argv) {
  for (int i = 0; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
  return 0;
}

static int cmd_serve(int argc, char **argv, fc_cli_serve_fn serve) {
  if (has_help(argc, argv)) {
    fc_config_usage(stdout);
    return 0;
  }
  fc_config_t cfg;
  char err[512] = "";
  int rc = fc_config_load(&cfg, argc, argv, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "flowcast serve: %s\n", err);
    fc_config_dispose(&cfg);
    return FC_EXIT_USAGE;
  }
  int status = serve(&cfg);
  fc_config_dispose(&cfg);
  return status;
}

static int cmd_backup(int argc, char **argv) {
  const char *dir = getenv("FLOWCAST_DATA"), *file = NULL, *from = "from FLOWCAST_DATA";
  if (!dir || !*dir) dir = "./data", from = "the default";
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
      printf("Usage: flowcast backup [--data DIR] FILE\n\n"
             "Copies DIR/flowcast.db (default ./data, or FLOWCAST_DATA) into FILE with SQLite's\n"
             "online backup: one consistent file, taken while the server may be running.\n"
             "To restore, stop the server and put FILE in place of DIR/flowcast.db.\n"
             "A missing DIR or database is an error (exit 4): nothing is created.\n");
      return 0;
    } else if (!strcmp(argv[i], "--data") && i + 1 < argc) {
      dir = argv[++i], from = "from --data";
    } else if (!strncmp(argv[i], "--data=", 7)) {
      dir = argv[i] + 7, from = "from --data";
    } else if (argv[i][0] == '-' || file) {
      fprintf(stderr, "flowcast backup: unexpected argument '%s' (see --help)\n", argv[i]);
      return 2;
    } else {
      file = argv[i];
    }
  }
  if (!file) {
    fprintf(stderr, "flowcast backup: name the file to write (see --help)\n");
    return 2;
  }
  int rc = fc_cli_data_dir_check("backup", dir, from);
  if (rc) return rc;
  char db[4096];
  snprintf(db, sizeof db, "%s/flowcast.db", dir);
  struct stat st;
  if (stat(db, &st) < 0) {
    fprintf(stderr, "flowcast backup: no database at %s: %s\n", db, strerror(errno));
    fprintf(stderr, "flowcast backup: hint: is %s the server's data directory? name it with --data DIR\n", dir);
    return FC_EXIT_NOT_FOUND;
  }
  char err[512];
  if (fc_store_backup(dir, file, err, sizeof err) < 0) {
    fprintf(stderr, "flowcast backup: %s\n", err);
    return 1;
  }
  printf("backed up %s/flowcast.db to %s\n", dir, file);
  return 0;
}

int fc_cli_main(int argc, char **argv, fc_cli_serve_fn serve) {
  if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "serve")) return cmd_serve(argc - 2, argv + 2, serve);
  if (!strcmp(argv[1], "backup")) return cmd_backup(argc - 2, argv + 2);
  if (!strcmp(argv[1], "users")) return fc_cli_users(argc - 2, argv + 2);
  if (!strcmp(argv[1], "publish")) return fc_cli_publish(argc - 2, argv + 2);
  if (!strcmp(argv[1], "subscribe")) return fc_cli_subscribe(argc - 2, argv + 2);
  if (!strcmp(argv[1], "token")) return fc_cli_token(argc - 2, argv + 2);
  if (!strcmp(argv[1], "start")) return fc_cli_start(argc - 2, argv + 2);
  if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) return fc_cli_version(argc - 2, argv + 2);
  fprintf(stderr, "flowcast: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return FC_EXIT_USAGE;
}
