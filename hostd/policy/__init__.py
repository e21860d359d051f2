"""Pure decisions and the policy model: no sqlite3, D-Bus, systemd, pyroute2 or threads."""
