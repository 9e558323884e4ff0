"""Files shipped with assocmem: the seed experiment (masha.toml, also examples/masha.toml)."""
