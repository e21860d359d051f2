"""The daemon: connections and dispatch, the ordered worker, op handlers, effects carried out."""
