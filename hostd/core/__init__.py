"""The stateful lifecycle: grants, requests and sudo services over state, with effects."""
