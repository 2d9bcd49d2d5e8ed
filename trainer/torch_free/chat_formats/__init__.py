"""ft's own jinja for every text chat template Axolotl names, one module per family group."""
