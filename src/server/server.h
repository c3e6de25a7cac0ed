/* server: the composition root. Turns the configuration into each module's
 * options, creates the modules bottom-up, runs the loops and tears the
 * modules down again. Nothing else in src/ knows every module. */
#ifndef FC_SERVER_H
#define FC_SERVER_H

#include "config/config.h"

/* Runs the server with `cfg` until SIGTERM or SIGINT. Start-up errors are
 * printed on stderr. Returns the process exit status (0, or 1 when it could
 * not start). `cfg` is borrowed for the whole run. Main thread only. */
int fc_server_run(const fc_config_t *cfg);

#endif
