# pneumoscope info / convert (the CLI face of native/image).
ps_add_test(cli_info SOURCES test_cli_info.c TIMEOUT 300 LABELS cli)
