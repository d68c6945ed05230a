"""The command line: parses arguments, runs the pipeline or fix mode, renders, and exits."""
