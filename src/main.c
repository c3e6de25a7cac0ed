/* flowcast: argv -> command -> run; `serve` runs the composition root. */
#include "cli/cli.h"
#include "server/server.h"

int main(int argc, char **argv) { return fc_cli_main(argc, argv, fc_server_run); }
