"""What hostd keeps and touches: SQLite, accounts and groups, timers, logind, journald."""
