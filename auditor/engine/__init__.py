"""The rules engine: finds the registered rules and runs them over the model."""
