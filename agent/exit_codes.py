"""The exit codes of every `pdm-agent` command: 0 done, 1 the operation failed (a
broker, a file, a bundle), 2 the command line or the configuration is wrong (the user's to fix).
Defined once: each command imports them from here."""

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
