/* cli: the command-line front end: `flowcast serve` and help. */
#ifndef FC_CLI_H
#define FC_CLI_H

/* Runs the command named in argv[1]. Returns the process exit status. */
int fc_cli_main(int argc, char **argv);

/* Subcommands, each given the arguments after its name. */
int fc_cli_users(int argc, char **argv);
int fc_cli_publish(int argc, char **argv);
int fc_cli_subscribe(int argc, char **argv);
int fc_cli_token(int argc, char **argv);
int fc_cli_start(int argc, char **argv);

#endif
