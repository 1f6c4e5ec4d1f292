"""`lightning-adapt compare`: several methods on one task and model, on one timeline."""
