/* cli: the command-line front end: `flowcast serve`, the client commands and help. */
#ifndef FC_CLI_H
#define FC_CLI_H

#include <stdio.h>

#include "config/config.h"

/* Exit statuses of every command; --help, docs/cli.md and flowcast.1 list them. */
enum {
  FC_EXIT_OK = 0,
  FC_EXIT_ERROR = 1,       /* any other error */
  FC_EXIT_USAGE = 2,       /* a bad command line or input */
  FC_EXIT_AUTH = 3,        /* 401 or 403: no token, a bad one, or one without the right */
  FC_EXIT_NOT_FOUND = 4,   /* 404: no such channel, workflow, job, user or data directory */
  FC_EXIT_UNAVAILABLE = 5, /* the server is unreachable, or answers 503 (storage unavailable) */
  FC_EXIT_JOB = 6,         /* a followed job ended with a status other than Done */
};

/* The exit status table, as --help shows it. */
void fc_cli_exit_help(FILE *out);

/* Runs the server with a parsed configuration (borrowed for the call);
 * returns the process exit status. */
typedef int (*fc_cli_serve_fn)(const fc_config_t *cfg);

/* Runs the command named in argv[1]; `serve` runs `flowcast serve` once its
 * options are parsed (the server sits above cli, so main hands it in).
 * Returns the process exit status. Main thread. */
int fc_cli_main(int argc, char **argv, fc_cli_serve_fn serve);

/* Subcommands, each given the arguments after its name. */
int fc_cli_users(int argc, char **argv);
int fc_cli_publish(int argc, char **argv);
int fc_cli_subscribe(int argc, char **argv);
int fc_cli_token(int argc, char **argv);
int fc_cli_start(int argc, char **argv);
int fc_cli_version(int argc, char **argv);

/* Checks that `dir` is an existing directory (the data directory of `cmd`);
 * else says which one was looked for and how to name another. Returns 0 or
 * FC_EXIT_NOT_FOUND. */
int fc_cli_data_dir_check(const char *cmd, const char *dir, const char *from);

#endif
