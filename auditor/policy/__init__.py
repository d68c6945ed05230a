"""Policy: the configuration, rule selection, waivers, baselines and finding fingerprints."""
