"""The command line: parses arguments, runs the pipeline or fix mode, renders, and exits."""

# The shipped bash and zsh completion scripts call `snapaudit` back with _SNAPAUDIT_COMPLETE set;
# typer answers only for shells whose completion classes are registered, which it does itself
# only for apps with --install-completion (this one has none).
from typer.completion import completion_init

completion_init()
