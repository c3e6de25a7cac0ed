/* Command dispatch and help. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "config/config.h"

static void usage(FILE *out) {
  fprintf(out,
          "flowcast: a real-time event server (SSE now; WebSocket, auth and workflows to come)\n\n"
          "Usage: flowcast COMMAND [options]\n\n"
          "Commands:\n"
          "  serve     run the server (flowcast serve --help for its options)\n"
          "  help      show this help\n\n"
          "Quick start:\n"
          "  flowcast serve --listen 127.0.0.1:8000\n"
          "  curl -N http://127.0.0.1:8000/api/v1/channels/news/sse\n"
          "  curl -d '{\"hello\":\"world\"}' http://127.0.0.1:8000/api/v1/channels/news/events\n");
}

static int has_help(int argc, char **argv) {
  for (int i = 0; i < argc; i++)
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
  return 0;
}

static int cmd_serve(int argc, char **argv) {
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
    return 2;
  }
  int status = fc_app_run(&cfg);
  fc_config_dispose(&cfg);
  return status;
}

int fc_cli_main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "serve")) return cmd_serve(argc - 2, argv + 2);
  fprintf(stderr, "flowcast: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
