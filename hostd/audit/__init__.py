"""`jit audit`: the journal read back, the auditor's model, exports and the HTML page."""
