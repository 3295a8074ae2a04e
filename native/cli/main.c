/* pneumoscope — the command line face of the library: every Fiji menu command has a subcommand. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#define PS_CLI_COMMAND(name)                  \
  int ps_cli_##name(int argc, char **argv); \
  extern const char ps_cli_##name##_help[];
#include "ps_cli_commands.h"
#undef PS_CLI_COMMAND

typedef struct {
  const char *name;
  int (*run)(int, char **);
  const char *help;
} command;

static const command commands[] = {
#define PS_CLI_COMMAND(name) {#name, ps_cli_##name, ps_cli_##name##_help},
#include "ps_cli_commands.h"
#undef PS_CLI_COMMAND
};

static void log_stderr(ps_log_level level, const char *msg, void *user) {
  (void)user;
  static const char *names[] = {"debug", "info", "warning", "error"};
  if (level == PS_LOG_DEBUG) return;
  fprintf(stderr, "pneumoscope: %s: %s\n", names[level], msg);
}

static void usage(FILE *f) {
  fprintf(f, "pneumoscope %s — chest film pneumonia screening (ResNet18, Grad-CAM)\n\n", ps_version());
  fprintf(f, "usage: pneumoscope <command> [options]   (pneumoscope <command> --help for details)\n\n");
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
  ps_log_set(log_stderr, NULL);
  if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    usage(stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("pneumoscope %s\n", ps_version());
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "pneumoscope: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
