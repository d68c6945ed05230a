"""snapaudit's built-in rules, one module each, registered through entry points."""
