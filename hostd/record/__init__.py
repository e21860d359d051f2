"""Session recording: jit-record, cast files, hostd's recording side, masking."""
